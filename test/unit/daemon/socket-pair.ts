// Two FramedSockets joined by a real loopback TCP connection: the master's end and the host's.
import net from 'node:net';
import { FramedSocket } from '../../../lib/daemon/framed-socket.js';

export async function socketPair(): Promise<{ master: FramedSocket; host: FramedSocket; done: () => void }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const s = await accepted;
  for (const x of [s, client]) x.setNoDelay(true);
  return {
    master: new FramedSocket(s, 'host'),
    host: new FramedSocket(client, 'master'),
    done: () => { s.destroy(); client.destroy(); server.close(); },
  };
}
