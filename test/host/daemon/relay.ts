// A TCP relay between host daemons and the master that sees the daemons' frames (a u32 length,
// then that many bytes) and lets a test inject, replay, reorder or alter them. It serves one
// connection: once that closes, a reconnecting host finds nobody listening (so a test sees what
// the cut link did, not what a fresh registration does).
import net from 'node:net';

export type Direction = 'toMaster' | 'toHost';

/** Given one frame (length header included), return the frames to send in its place. */
export type Tamper = (frame: Buffer, dir: Direction) => Buffer[];

export class Relay {
  private server: net.Server;
  private sides: Partial<Record<Direction, net.Socket>> = {};
  /** Every frame that passed, by direction (after tampering). */
  readonly seen: Record<Direction, Buffer[]> = { toMaster: [], toHost: [] };
  tamper: Tamper | null = null;
  /** Resolves when the relayed connection closed (either side hung up). */
  readonly cut: Promise<void>;
  private onCut!: () => void;
  port = 0;

  constructor(private readonly masterPort: number) {
    this.cut = new Promise((r) => { this.onCut = r; });
    this.server = net.createServer((host) => {
      this.server.close(); // one connection only
      const master = net.connect(masterPort, '127.0.0.1');
      this.sides = { toMaster: master, toHost: host };
      this.pipe(host, master, 'toMaster');
      this.pipe(master, host, 'toHost');
      const end = () => { host.destroy(); master.destroy(); this.onCut(); };
      for (const s of [host, master]) { s.on('close', end); s.on('error', end); }
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  /** Writes bytes of the relay's own making into one direction. */
  inject(dir: Direction, bytes: Buffer): void {
    this.sides[dir]!.write(bytes);
  }

  close(): void {
    this.server.close();
    for (const s of Object.values(this.sides)) s?.destroy();
  }

  private pipe(from: net.Socket, to: net.Socket, dir: Direction): void {
    let buf = Buffer.alloc(0);
    from.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const frame = buf.subarray(0, 4 + buf.readUInt32BE(0));
        buf = buf.subarray(frame.length);
        for (const out of this.tamper ? this.tamper(Buffer.from(frame), dir) : [frame]) {
          this.seen[dir].push(out);
          to.write(out);
        }
      }
    });
  }
}
