// What every Vulkan instance layer of ours does the same way: find the
// loader's link to the next layer in vkCreateInstance, and answer the
// loader's interface negotiation. Shared by device-select.c and the tests'
// fake-pci-layer.c.
#ifndef LORAFLEET_LAYER_CHAIN_H
#define LORAFLEET_LAYER_CHAIN_H

#include <vulkan/vk_layer.h>
#include <vulkan/vulkan.h>

// The next layer's vkGetInstanceProcAddr, taken from the create info's chain,
// which is advanced for that layer; NULL when the loader gave no link.
static inline PFN_vkGetInstanceProcAddr take_next_layer(const VkInstanceCreateInfo *info) {
  VkLayerInstanceCreateInfo *link = (VkLayerInstanceCreateInfo *)info->pNext;
  while (link && !(link->sType == VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO &&
                   link->function == VK_LAYER_LINK_INFO))
    link = (VkLayerInstanceCreateInfo *)link->pNext;
  if (!link) return NULL;
  PFN_vkGetInstanceProcAddr next = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
  link->u.pLayerInfo = link->u.pLayerInfo->pNext;
  return next;
}

// vkNegotiateLoaderLayerInterfaceVersion (interface version 2) for an
// instance-only layer: no device-level entry point, so the loader leaves the
// layer out of every device's chain.
#define LORAFLEET_NEGOTIATE(gipa)                                                                  \
  __attribute__((visibility("default"))) VKAPI_ATTR VkResult VKAPI_CALL                           \
  vkNegotiateLoaderLayerInterfaceVersion(VkNegotiateLayerInterface *version) {                   \
    if (version->loaderLayerInterfaceVersion < 2) return VK_ERROR_INITIALIZATION_FAILED;         \
    version->loaderLayerInterfaceVersion = 2;                                                    \
    version->pfnGetInstanceProcAddr = gipa;                                                      \
    version->pfnGetDeviceProcAddr = NULL;                                                        \
    version->pfnGetPhysicalDeviceProcAddr = NULL;                                                \
    return VK_SUCCESS;                                                                           \
  }

#endif
