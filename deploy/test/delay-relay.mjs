// A TCP relay that delays every chunk, each way, by a fixed time: latency
// between network namespaces where the kernel has no `tc netem`.
//   node delay-relay.mjs LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT ONE_WAY_MS
// A constant delay keeps each direction's chunks in order (timers of equal
// delay fire in the order they were set).
import { createConnection, createServer } from 'node:net';

const [listenHost, listenPort, targetHost, targetPort, delayText] = process.argv.slice(2);
const delayMs = Number(delayText);

const later = (fn) => (delayMs > 0 ? setTimeout(fn, delayMs) : fn());

function pipeDelayed(from, to) {
  from.on('data', (chunk) => later(() => to.destroyed || to.write(chunk)));
  from.on('end', () => later(() => to.end()));
  from.on('error', (error) => {
    console.log(`relay: ${error.message}`);
    to.destroy();
  });
  from.on('close', () => later(() => to.destroy()));
}

const server = createServer((client) => {
  console.log(`relay: connection from ${client.remoteAddress}:${client.remotePort}`);
  client.setNoDelay(true);
  const upstream = createConnection({ host: targetHost, port: Number(targetPort) });
  upstream.setNoDelay(true);
  pipeDelayed(client, upstream);
  pipeDelayed(upstream, client);
});
server.listen(Number(listenPort), listenHost, () => console.log(`relay ready: ${delayMs} ms`));
