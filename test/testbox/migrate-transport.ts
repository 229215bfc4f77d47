// A transport for `xl migrate` between test boxes, which have no ssh: xl runs
// `<this> <host> xl migrate-receive` for its stream (`xl migrate -s "node migrate-transport.js"`),
// and this connects to the receiver that serveMigrateReceive started on <host>.
import net from 'node:net';
import { spawn } from 'node:child_process';

export const MIGRATE_PORT = 47020;

/** On the receiving box: each connection is one `xl migrate-receive`, the socket its stdin and stdout. */
export function serveMigrateReceive(host: string): net.Server {
  return net.createServer({ allowHalfOpen: true }, (socket) => {
    const child = spawn('xl', ['migrate-receive'], { stdio: [socket, socket, 'inherit'] });
    child.on('exit', () => socket.end());
  }).listen(MIGRATE_PORT, host);
}

// As xl's "ssh command": argv[2] is the host; the rest is the command the receiver runs anyway.
if (process.argv[1]?.endsWith('migrate-transport.js')) {
  const socket = net.connect({ host: process.argv[2], port: MIGRATE_PORT, allowHalfOpen: true });
  process.stdin.pipe(socket);
  socket.pipe(process.stdout);
  socket.on('error', (e) => {
    process.stderr.write(`migrate-transport: ${process.argv[2]}:${MIGRATE_PORT}: ${e.message}\n`);
    process.exit(1);
  });
  socket.on('close', () => process.exit(0));
}
