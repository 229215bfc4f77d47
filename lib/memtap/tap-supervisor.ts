// Keeps a clone's memtap alive. The fault loop runs in a worker process; if that process
// dies, the clone is paused at once (its vCPUs would otherwise hang one by one on faults
// nobody answers), a new worker takes over the same paging ring, and the clone runs on.
// A worker that failed (a page Xen will not take, a memserver serving another image) is not
// restarted: the clone stays paused, and its memory state says why (snowflock list).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { openXen } from '../xen/control.js';
import { loadAddon, type XenStore } from '../xen/native.js';
import { forkProcessArgv, type MemtapProcessOptions } from './fork-process.js';
import { writeMemoryState } from './memory-state.js';

export interface SupervisorOptions {
  /** what each worker is started with (a restarted worker also gets the ring to take over) */
  worker: Omit<MemtapProcessOptions, 'takeover'>;
  emit: (event: Record<string, unknown>) => void;
  maxRestarts?: number;
}

export async function superviseMemtap(o: SupervisorOptions): Promise<number> {
  const domid = o.worker.domid;
  const xc = openXen();
  const xs: XenStore = new (loadAddon().XenStore)();
  const state = (value: string) => writeMemoryState(xs, domid, value);
  let failure: string | undefined;
  let takeover = false;
  let pausedByUs = false;
  let restarts = 0;
  let stopping = false;
  let child: ReturnType<typeof spawn> | undefined;
  const forward = (signal: NodeJS.Signals) => () => {
    if (signal !== 'SIGUSR1') stopping = true;
    child?.kill(signal);
  };
  for (const s of ['SIGTERM', 'SIGINT', 'SIGUSR1'] as const) process.on(s, forward(s));
  const domainExists = () => {
    try {
      return !xc.domainInfo(domid).dying;
    } catch {
      return false;
    }
  };
  try {
    for (;;) {
      const argv = forkProcessArgv({ role: 'memtap-worker', options: { ...o.worker, takeover } });
      child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
      const lines = createInterface({ input: child.stdout! });
      // Its output may end before or after the exit is seen: listen for both from the start.
      const drained = new Promise((r) => lines.once('close', r));
      const exited = new Promise<[number | null, NodeJS.Signals | null]>((r) => child!.once('exit', (c, s) => r([c, s])));
      lines.on('line', (line) => {
        let event: Record<string, unknown>;
        try {
          event = JSON.parse(line) as Record<string, unknown>;
        } catch {
          return o.emit({ event: 'worker-output', line });
        }
        o.emit({ ...event, worker: child!.pid });
        if (event.event === 'failed') failure = String(event.message ?? 'memtap failed');
        if (event.event === 'memserver-lost') state('paused: memserver lost');
        if (event.event === 'memserver-back') state('on-demand');
        if (event.event === 'settle-started') state('settling');
        if (event.event === 'settled') state('whole');
        if (event.event === 'ready') {
          state('on-demand');
          takeover = true;
          if (pausedByUs) {
            xc.unpause(domid);
            pausedByUs = false;
            o.emit({ event: 'memtap-restarted', domid: domid, restarts });
          }
        }
      });
      const [code, signal] = await exited;
      await drained;
      if (code === 0 || stopping || !domainExists()) return code ?? 0;
      if (failure !== undefined) {
        state(`failed: ${failure}`);
        return code ?? 1; // the worker paused the clone; another would fail the same way
      }
      if (!takeover) return code ?? 1; // never ready: nothing to take over
      if (!pausedByUs) {
        xc.pause(domid);
        pausedByUs = true;
      }
      o.emit({ event: 'memtap-lost', domid: domid, code, signal, paused: true });
      if (++restarts > (o.maxRestarts ?? 5)) {
        o.emit({ event: 'error', message: `memtap for domain ${domid} died ${restarts} times; the clone stays paused` });
        state(`failed: memtap died ${restarts} times`);
        return 1;
      }
    }
  } finally {
    xs.close();
    xc.close();
  }
}
