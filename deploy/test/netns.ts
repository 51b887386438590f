// Hosts made of Linux network namespaces: one namespace per host, each with
// its own address on 10.213.0.0/24, joined by veth pairs to a bridge that
// lives in a namespace of its own, so nothing is added to this machine's own
// network. Needs root and iproute2. remove() deletes every namespace (and
// with them the links and addresses); call it also when a test fails.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const SUBNET = '10.213.0';

export interface Host {
  /** The namespace's name (`ip netns exec NAME ...`). */
  ns: string;
  address: string;
  /** The bridge's end of this host's link: set down to partition the host. */
  port: string;
}

export class NamespaceNetwork {
  readonly hosts: Host[] = [];
  private readonly bridgeNs: string;
  private readonly made: string[] = [];

  constructor(private readonly prefix: string) {
    this.bridgeNs = `${prefix}br`;
  }

  /** Hosts named `names` at SUBNET.first, first+1, ... (and the bridge's namespace, once). */
  async create(names: string[], first = 1): Promise<void> {
    if (!this.made.includes(this.bridgeNs)) {
      await this.ip('netns', 'add', this.bridgeNs);
      this.made.push(this.bridgeNs);
      await this.ip('-n', this.bridgeNs, 'link', 'add', 'br0', 'type', 'bridge');
      await this.ip('-n', this.bridgeNs, 'link', 'set', 'br0', 'up');
    }
    for (const [i, name] of names.entries()) {
      const ns = `${this.prefix}${name}`;
      const port = `p${this.hosts.length}`;
      const address = `${SUBNET}.${first + i}`;
      await this.ip('netns', 'add', ns);
      this.made.push(ns);
      await this.ip('-n', ns, 'link', 'set', 'lo', 'up');
      await this.ip(
        '-n',
        ns,
        'link',
        'add',
        'eth0',
        'type',
        'veth',
        'peer',
        'name',
        port,
        'netns',
        this.bridgeNs,
      );
      await this.ip('-n', this.bridgeNs, 'link', 'set', port, 'master', 'br0', 'up');
      await this.ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
      await this.ip('-n', ns, 'link', 'set', 'eth0', 'up');
      this.hosts.push({ ns, address, port });
    }
  }

  /** Cuts (down) or restores (up) a host's link at the bridge. */
  async link(host: Host, state: 'up' | 'down'): Promise<void> {
    await this.ip('-n', this.bridgeNs, 'link', 'set', host.port, state);
  }

  async remove(): Promise<void> {
    for (const ns of this.made.splice(0).reverse()) {
      await this.ip('netns', 'del', ns).catch(() => undefined);
    }
  }

  private async ip(...args: string[]): Promise<void> {
    try {
      await run('ip', args, { timeout: 10_000 });
    } catch (error) {
      throw new Error(`ip ${args.join(' ')}: ${(error as { stderr?: string }).stderr ?? error}`);
    }
  }
}
