// Hosts made of Linux network namespaces: one namespace per host, each with
// its own address on 10.213.0.0/24, joined by veth pairs to a bridge that
// lives in a namespace of its own, so nothing is added to this machine's own
// network. Needs root and iproute2. remove() deletes every namespace (and
// with them the links and addresses); call it also when a test fails.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const SUBNET = '10.213.0';

// A TCP listener that answers "ok" to each connection, and a dialer that exits 0
// on that answer (both `node -e`, ADDRESS and PORT from the environment).
const LISTEN = `const s = require('net').createServer((c) => c.end('ok'));
s.listen(Number(process.env.PORT), process.env.ADDRESS, () => console.log('listening'));`;
const DIAL = `const c = require('net').connect(Number(process.env.PORT), process.env.ADDRESS);
let d = '';
c.on('data', (x) => (d += x));
c.on('end', () => process.exit(d === 'ok' ? 0 : 1));
c.on('error', (e) => { console.error(e.message); process.exit(1); });
setTimeout(() => { console.error('no answer in 5 s'); process.exit(1); }, 5000);`;

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

  /**
   * Checks that every host reaches `to` over TCP (a listener in `to`, a
   * connection from each other host), so a machine whose bridges pass no
   * traffic fails here, naming the links and neighbours, not as a training
   * run that waits for its workers until the test times out.
   */
  async checkReachable(to: Host, port: number): Promise<void> {
    const server = execFile('ip', ['netns', 'exec', to.ns, process.execPath, '-e', LISTEN], {
      env: { ...process.env, ADDRESS: to.address, PORT: String(port) },
      timeout: 30_000,
    });
    const failures: string[] = [];
    try {
      await new Promise<void>((resolve, reject) => {
        server.stdout!.once('data', () => resolve());
        server.once('exit', (code) =>
          reject(new Error(`the listener in ${to.ns} exited (${code})`)),
        );
      });
      for (const host of this.hosts.filter((h) => h !== to)) {
        const env = { ...process.env, ADDRESS: to.address, PORT: String(port) };
        await run('ip', ['netns', 'exec', host.ns, process.execPath, '-e', DIAL], { env }).catch(
          (error: { stderr?: string }) =>
            failures.push(`${host.ns} -> ${to.address}:${port}: ${error.stderr}`),
        );
      }
    } finally {
      server.kill('SIGKILL');
    }
    if (failures.length > 0) {
      throw new Error(
        `hosts that cannot reach ${to.ns}:\n${failures.join('\n')}\n${await this.describe()}`,
      );
    }
  }

  /** The bridge's ports and every host's addresses and neighbours, for an error message. */
  async describe(): Promise<string> {
    const show = async (args: string[]) => {
      const text = await run('ip', args).then(
        (r) => r.stdout,
        (e: Error) => e.message,
      );
      return `$ ip ${args.join(' ')}\n${text}`;
    };
    const parts = [await show(['-n', this.bridgeNs, '-br', 'link'])];
    for (const h of this.hosts) {
      parts.push(await show(['-n', h.ns, '-br', 'addr']), await show(['-n', h.ns, 'neigh']));
    }
    return parts.join('\n');
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
