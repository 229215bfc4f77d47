// A TCP proxy that counts the bytes the server sends: put between a clone's daemon and a
// fork's front, it tells how much of the slice a clone fetched (TLS records included).
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface CountingProxy {
  port: number;
  /** bytes server → clients since the last reset */
  readonly fromServer: number;
  reset(): void;
  close(): Promise<void>;
}

export async function countingProxy(target: { host: string; port: number }): Promise<CountingProxy> {
  let fromServer = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    sockets.add(client).add(upstream);
    upstream.on('data', (b) => {
      fromServer += b.length;
      client.write(b);
    });
    client.on('data', (b) => upstream.write(b));
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  if (!addr || typeof addr !== 'object') throw new Error('proxy has no port');
  return {
    port: addr.port,
    get fromServer() {
      return fromServer;
    },
    reset: () => (fromServer = 0),
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
