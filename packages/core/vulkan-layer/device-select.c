// VK_LAYER_LORAFLEET_device_select: shows this process one Vulkan device.
//
// Dawn (the webgpu backend) selects an adapter by a substring of its name, so
// on a host with several identical GPUs every worker would open the first one.
// A worker started with `--gpu I` on such a host loads this layer (core's
// src/backend/vulkan-device-layer.ts sets VK_LAYER_PATH and VK_INSTANCE_LAYERS)
// and names its device in two variables:
//   LORAFLEET_VK_DEVICE="K:NAME"     expose only the K-th device (from 0) whose
//                                    deviceName is exactly NAME, and no other
//   LORAFLEET_VK_DEVICE_REPORT=FILE  write "K COUNT PCI NAME\n" there: what was
//                                    exposed, of how many so named, at which
//                                    PCI address ("-" when unknown)
// The devices named NAME are taken in PCI address order (domain:bus:device.fn,
// the order nvidia-smi numbers GPUs) when each of them reports its address
// (VK_EXT_pci_bus_info), else in the order the loader lists them. K out of
// range, or a malformed LORAFLEET_VK_DEVICE, exposes no device (and says so on
// stderr): a worker never falls back to another GPU. Without
// LORAFLEET_VK_DEVICE the layer passes everything through.
//
// An instance layer only (as Mesa's VK_LAYER_MESA_device_select): it filters
// vkEnumeratePhysicalDevices and vkEnumeratePhysicalDeviceGroups; devices,
// queues and commands never pass through it.
#include "layer-chain.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TAG "lorafleet device-select layer"

// What the next layer (or the loader's terminator) offers one VkInstance.
struct instance {
  VkInstance handle;
  uint32_t api_version; // the application's, VK_API_VERSION_1_0 when it named none
  PFN_vkGetInstanceProcAddr next_gipa;
  PFN_vkDestroyInstance destroy;
  PFN_vkEnumeratePhysicalDevices enumerate;
  PFN_vkEnumeratePhysicalDeviceGroups enumerate_groups; // NULL on a 1.0 instance
  PFN_vkGetPhysicalDeviceProperties properties;
  PFN_vkGetPhysicalDeviceProperties2 properties2; // NULL on a 1.0 instance
  PFN_vkEnumerateDeviceExtensionProperties extensions;
  struct instance *next;
};

static struct instance *instances;
static pthread_mutex_t instances_lock = PTHREAD_MUTEX_INITIALIZER;

static struct instance *find_instance(VkInstance handle) {
  pthread_mutex_lock(&instances_lock);
  struct instance *it = instances;
  while (it && it->handle != handle) it = it->next;
  pthread_mutex_unlock(&instances_lock);
  return it;
}

static void add_instance(struct instance *in) {
  pthread_mutex_lock(&instances_lock);
  in->next = instances;
  instances = in;
  pthread_mutex_unlock(&instances_lock);
}

static struct instance *remove_instance(VkInstance handle) {
  pthread_mutex_lock(&instances_lock);
  struct instance **at = &instances;
  while (*at && (*at)->handle != handle) at = &(*at)->next;
  struct instance *found = *at;
  if (found) *at = found->next;
  pthread_mutex_unlock(&instances_lock);
  return found;
}

// LORAFLEET_VK_DEVICE parsed: which device of which name.
struct choice {
  unsigned long ordinal;
  char name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
  int valid; // 0: malformed, expose nothing
};

// 0 when the variable is unset or empty (pass through), else 1.
static int read_choice(struct choice *c) {
  const char *spec = getenv("LORAFLEET_VK_DEVICE");
  if (!spec || !*spec) return 0;
  char *end = NULL;
  c->ordinal = strtoul(spec, &end, 10);
  c->valid = end != spec && *end == ':' && strlen(end + 1) < sizeof c->name;
  if (c->valid) strcpy(c->name, end + 1);
  else fprintf(stderr, TAG ": LORAFLEET_VK_DEVICE=\"%s\" is not \"K:NAME\"; exposing no device\n", spec);
  return 1;
}

// One device named as asked, with its PCI address when it reports one.
struct candidate {
  VkPhysicalDevice device;
  int has_pci;
  VkPhysicalDevicePCIBusInfoPropertiesEXT pci;
};

static int has_extension(const struct instance *in, VkPhysicalDevice device, const char *name) {
  uint32_t count = 0;
  if (in->extensions(device, NULL, &count, NULL) != VK_SUCCESS || count == 0) return 0;
  VkExtensionProperties *list = calloc(count, sizeof *list);
  int found = 0;
  if (list && in->extensions(device, NULL, &count, list) == VK_SUCCESS)
    for (uint32_t i = 0; i < count && !found; i++) found = !strcmp(list[i].extensionName, name);
  free(list);
  return found;
}

// Reads the device's PCI address where the instance, the device and its
// driver all allow it (VK_EXT_pci_bus_info through the 1.1 properties query).
static void read_pci(const struct instance *in, const VkPhysicalDeviceProperties *props,
                     struct candidate *c) {
  c->has_pci = 0;
  if (!in->properties2 || in->api_version < VK_API_VERSION_1_1) return;
  if (props->apiVersion < VK_API_VERSION_1_1) return;
  if (!has_extension(in, c->device, VK_EXT_PCI_BUS_INFO_EXTENSION_NAME)) return;
  memset(&c->pci, 0, sizeof c->pci);
  c->pci.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PCI_BUS_INFO_PROPERTIES_EXT;
  VkPhysicalDeviceProperties2 all = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                     .pNext = &c->pci};
  in->properties2(c->device, &all);
  c->has_pci = 1;
}

static int by_pci_address(const void *a, const void *b) {
  const VkPhysicalDevicePCIBusInfoPropertiesEXT *x = &((const struct candidate *)a)->pci;
  const VkPhysicalDevicePCIBusInfoPropertiesEXT *y = &((const struct candidate *)b)->pci;
  uint32_t kx[4] = {x->pciDomain, x->pciBus, x->pciDevice, x->pciFunction};
  uint32_t ky[4] = {y->pciDomain, y->pciBus, y->pciDevice, y->pciFunction};
  for (int i = 0; i < 4; i++)
    if (kx[i] != ky[i]) return kx[i] < ky[i] ? -1 : 1;
  return 0;
}

static void write_report(const struct choice *c, uint32_t count, const struct candidate *chosen) {
  const char *file = getenv("LORAFLEET_VK_DEVICE_REPORT");
  if (!file || !*file) return;
  FILE *out = fopen(file, "w");
  if (!out) {
    fprintf(stderr, TAG ": cannot write LORAFLEET_VK_DEVICE_REPORT=%s\n", file);
    return;
  }
  char pci[32] = "-";
  if (chosen && chosen->has_pci)
    snprintf(pci, sizeof pci, "%04x:%02x:%02x.%x", chosen->pci.pciDomain, chosen->pci.pciBus,
             chosen->pci.pciDevice, chosen->pci.pciFunction);
  if (chosen) fprintf(out, "%lu %u %s %s\n", c->ordinal, count, pci, c->name);
  else fprintf(out, "- %u - %s\n", count, c->valid ? c->name : "");
  fclose(out);
}

// The device LORAFLEET_VK_DEVICE names among the next layer's [n] devices:
// 1 and *out set, or 0 (none exposed). VK_ERROR_* from the loader passes up.
static VkResult select_device(const struct instance *in, const struct choice *c,
                              VkPhysicalDevice *out, uint32_t *exposed) {
  *exposed = 0;
  uint32_t n = 0;
  VkResult r = in->enumerate(in->handle, &n, NULL);
  if (r != VK_SUCCESS) return r;
  VkPhysicalDevice *all = calloc(n ? n : 1, sizeof *all);       // [n]
  struct candidate *named = calloc(n ? n : 1, sizeof *named); // [count <= n]
  if (!all || !named) {
    free(all);
    free(named);
    return VK_ERROR_OUT_OF_HOST_MEMORY;
  }
  r = in->enumerate(in->handle, &n, all);
  uint32_t count = 0;
  int every_pci = 1;
  for (uint32_t i = 0; r >= 0 && c->valid && i < n; i++) {
    VkPhysicalDeviceProperties props;
    in->properties(all[i], &props);
    if (strcmp(props.deviceName, c->name) != 0) continue;
    named[count].device = all[i];
    read_pci(in, &props, &named[count]);
    every_pci &= named[count].has_pci;
    count++;
  }
  if (r >= 0) {
    if (every_pci && count > 1) qsort(named, count, sizeof *named, by_pci_address);
    const struct candidate *chosen = c->valid && c->ordinal < count ? &named[c->ordinal] : NULL;
    if (chosen) {
      *out = chosen->device;
      *exposed = 1;
    } else if (c->valid) {
      fprintf(stderr, TAG ": LORAFLEET_VK_DEVICE asks for device %lu named \"%s\"; there %s %u\n",
              c->ordinal, c->name, count == 1 ? "is" : "are", count);
    }
    write_report(c, count, chosen);
    r = VK_SUCCESS;
  }
  free(all);
  free(named);
  return r;
}

// The device to expose, for either enumeration: *n is 0 or 1 (*chosen). 1
// when the layer passes the call through instead (no LORAFLEET_VK_DEVICE).
static int exposed_device(VkInstance instance, const struct instance **in, VkResult *r,
                          VkPhysicalDevice *chosen, uint32_t *n) {
  *in = find_instance(instance);
  *r = VK_ERROR_INITIALIZATION_FAILED;
  if (!*in) return 0;
  struct choice c;
  if (!read_choice(&c)) return 1;
  *r = select_device(*in, &c, chosen, n);
  return 0;
}

// Vulkan's two-call protocol for a list of n items: the count alone when
// there is no array, VK_INCOMPLETE when it is too small. 1: fill the array.
static int fits(uint32_t n, uint32_t *pCount, const void *array, VkResult *r) {
  *r = VK_SUCCESS;
  if (!array) *pCount = n;
  else if (*pCount < n) *pCount = 0, *r = VK_INCOMPLETE;
  else *pCount = n;
  return array && *r == VK_SUCCESS && n > 0;
}

static VKAPI_ATTR VkResult VKAPI_CALL enumerate_physical_devices(VkInstance instance,
                                                                  uint32_t *pCount,
                                                                  VkPhysicalDevice *pDevices) {
  const struct instance *in;
  VkResult r;
  VkPhysicalDevice chosen = VK_NULL_HANDLE;
  uint32_t n = 0;
  if (exposed_device(instance, &in, &r, &chosen, &n))
    return in->enumerate(instance, pCount, pDevices);
  if (r != VK_SUCCESS) return r;
  if (fits(n, pCount, pDevices, &r)) pDevices[0] = chosen;
  return r;
}

// Device groups: one group holding only the chosen device.
static VKAPI_ATTR VkResult VKAPI_CALL enumerate_physical_device_groups(
    VkInstance instance, uint32_t *pCount, VkPhysicalDeviceGroupProperties *pGroups) {
  const struct instance *in;
  VkResult r;
  VkPhysicalDevice chosen = VK_NULL_HANDLE;
  uint32_t n = 0;
  if (exposed_device(instance, &in, &r, &chosen, &n))
    return in->enumerate_groups(instance, pCount, pGroups);
  if (r != VK_SUCCESS) return r;
  if (fits(n, pCount, pGroups, &r)) {
    pGroups[0].physicalDeviceCount = 1;
    memset(pGroups[0].physicalDevices, 0, sizeof pGroups[0].physicalDevices);
    pGroups[0].physicalDevices[0] = chosen;
    pGroups[0].subsetAllocation = VK_FALSE;
  }
  return r;
}

static VKAPI_ATTR void VKAPI_CALL destroy_instance(VkInstance instance,
                                                   const VkAllocationCallbacks *pAllocator) {
  struct instance *in = remove_instance(instance);
  if (!in) return;
  in->destroy(instance, pAllocator);
  free(in);
}

static VKAPI_ATTR VkResult VKAPI_CALL create_instance(const VkInstanceCreateInfo *pCreateInfo,
                                                      const VkAllocationCallbacks *pAllocator,
                                                      VkInstance *pInstance) {
  PFN_vkGetInstanceProcAddr gipa = take_next_layer(pCreateInfo);
  if (!gipa) return VK_ERROR_INITIALIZATION_FAILED;
  PFN_vkCreateInstance create = (PFN_vkCreateInstance)gipa(VK_NULL_HANDLE, "vkCreateInstance");
  if (!create) return VK_ERROR_INITIALIZATION_FAILED;
  VkResult r = create(pCreateInfo, pAllocator, pInstance);
  if (r != VK_SUCCESS) return r;

  struct instance *in = calloc(1, sizeof *in);
  if (!in) return VK_ERROR_OUT_OF_HOST_MEMORY;
  const VkApplicationInfo *app = pCreateInfo->pApplicationInfo;
  in->handle = *pInstance;
  in->api_version = app && app->apiVersion ? app->apiVersion : VK_API_VERSION_1_0;
  in->next_gipa = gipa;
#define NEXT(type, name) (type) gipa(*pInstance, name)
  in->destroy = NEXT(PFN_vkDestroyInstance, "vkDestroyInstance");
  in->enumerate = NEXT(PFN_vkEnumeratePhysicalDevices, "vkEnumeratePhysicalDevices");
  in->enumerate_groups = NEXT(PFN_vkEnumeratePhysicalDeviceGroups, "vkEnumeratePhysicalDeviceGroups");
  if (!in->enumerate_groups)
    in->enumerate_groups = NEXT(PFN_vkEnumeratePhysicalDeviceGroups, "vkEnumeratePhysicalDeviceGroupsKHR");
  in->properties = NEXT(PFN_vkGetPhysicalDeviceProperties, "vkGetPhysicalDeviceProperties");
  in->properties2 = NEXT(PFN_vkGetPhysicalDeviceProperties2, "vkGetPhysicalDeviceProperties2");
  in->extensions = NEXT(PFN_vkEnumerateDeviceExtensionProperties, "vkEnumerateDeviceExtensionProperties");
#undef NEXT
  add_instance(in);
  return VK_SUCCESS;
}

static VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL get_instance_proc_addr(VkInstance instance,
                                                                      const char *name) {
  if (!strcmp(name, "vkGetInstanceProcAddr")) return (PFN_vkVoidFunction)get_instance_proc_addr;
  if (!strcmp(name, "vkCreateInstance")) return (PFN_vkVoidFunction)create_instance;
  const struct instance *in = instance ? find_instance(instance) : NULL;
  if (!in) return NULL;
  if (!strcmp(name, "vkDestroyInstance")) return (PFN_vkVoidFunction)destroy_instance;
  if (!strcmp(name, "vkEnumeratePhysicalDevices"))
    return (PFN_vkVoidFunction)enumerate_physical_devices;
  if (!strcmp(name, "vkEnumeratePhysicalDeviceGroups") ||
      !strcmp(name, "vkEnumeratePhysicalDeviceGroupsKHR"))
    return in->enumerate_groups ? (PFN_vkVoidFunction)enumerate_physical_device_groups : NULL;
  return in->next_gipa(instance, name);
}

// The loader's entry point (layer interface version 2).
LORAFLEET_NEGOTIATE(get_instance_proc_addr)
