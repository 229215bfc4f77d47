// Relaunching a family whose daemon died (killed, crashed, its host restarted). The record lists
// every head's base and overlay layers, its slices and the fronts exporting them, so a fresh
// daemon rebuilds the same graph under the same node, export and object names. Each overlay is
// checked with qemu-img before QEMU opens it: QEMU opens a truncated qcow2 without a word and
// reads what lies past its end as zeroes. A head that cannot be opened stays in the record with
// its fault (the listing shows it, its files are kept) and the other heads come back.
import { DiskError, classify } from './errors.js';
import { addExport, addForkNode, addFormatNode, addPskCreds } from './graph.js';
import { restartFront } from './front.js';
import { checkOverlay } from './qemu-img.js';
import type { QmpClient } from './qmp.js';
import type { FamilyRecord, Head } from './record.js';
import { daemonPaths, runningDaemon } from './storage-daemon.js';
import { Undo } from './undo.js';

/** Rebuilds the record's graph in a fresh daemon whose NBD server listens on `familySocket`. */
export async function reopenFamily(qmp: QmpClient, record: FamilyRecord, o: { familySocket: string; log: (m: string) => void }): Promise<void> {
  for (const head of record.heads) {
    try {
      await Undo.guard((undo) => reopenHead(qmp, undo, head), o.log);
      delete head.fault;
    } catch (e) {
      const d = classify(e, `reopening ${head.export}`);
      head.fault = { code: d.code, message: d.message, at: new Date().toISOString() };
      o.log(`family ${record.family}: ${d.message}`);
    }
  }
  for (const s of record.slices) {
    if (!s.exportId || !s.export || s.released) continue;
    if (record.heads.find((h) => h.vm === s.vm && h.disk === s.disk)?.fault) {
      // its node is not in the graph: the slice is recorded as frozen, not exported
      delete s.export;
      delete s.exportId;
      continue;
    }
    try {
      await addExport(qmp, new Undo(), { id: s.exportId, node: s.node, name: s.export, writable: false });
    } catch (e) {
      o.log(`family ${record.family}: slice ${s.n} of ${s.vm}/${s.disk} (fork ${s.fork}) is not exported again: ${(e as Error).message}`);
      delete s.export;
      delete s.exportId;
    }
  }
  for (const [i, f] of record.fronts.entries()) {
    // a front that still runs reconnects to the family's socket by itself
    if (runningDaemon(daemonPaths(f.dir)) !== undefined) continue;
    try {
      record.fronts[i] = await restartFront(f, o.familySocket, record.slices.filter((s) => s.fork === f.fork && s.export && !s.released));
      o.log(`family ${record.family}: front of fork ${f.fork} restarted on ${f.host}:${f.port}`);
    } catch (e) {
      o.log(`family ${record.family}: the front of fork ${f.fork} (${f.host}:${f.port}) could not be restarted: ${(e as Error).message}`);
    }
  }
}

/** The head's base, its overlays bottom up (all but the top read-only: they are slices) and its export. */
async function reopenHead(qmp: QmpClient, undo: Undo, head: Head): Promise<void> {
  const b = head.base;
  const frozen = head.layers.length > 0;
  if (b.kind === 'image') {
    await addFormatNode(qmp, undo, { node: b.node, fileNode: b.fileNode, filename: b.image, driver: b.format, readOnly: frozen }).catch((e) => {
      throw classify(e, `reopening ${head.export}'s image ${b.image}`);
    });
  } else {
    if (!b.socket) await addPskCreds(qmp, undo, { id: b.credsId, endpoint: 'client', dir: b.pskDir, identity: b.identity });
    await addForkNode(qmp, undo, b);
  }
  for (const [i, l] of head.layers.entries()) {
    // nothing holds the file now: leaks a killed daemon left are freed, damage refuses the head
    const c = await checkOverlay(l.file, { repairLeaks: true });
    if (!c.ok) {
      const missing = /No such file/.test(c.detail ?? '');
      throw new DiskError(missing ? 'not-found' : 'corrupt-overlay', `overlay ${l.file} of ${head.export} ${missing ? 'is missing' : 'is damaged'}: ${c.detail}`);
    }
    const last = i === head.layers.length - 1;
    await addFormatNode(qmp, undo, { node: l.node, fileNode: l.fileNode, filename: l.file, driver: 'qcow2', backing: head.layers[i - 1]?.node ?? b.node, readOnly: !last }).catch((e) => {
      throw classify(e, `reopening overlay ${l.file} of ${head.export}`);
    });
  }
  await addExport(qmp, undo, { id: head.exportId, node: head.layers.at(-1)?.node ?? b.node, name: head.export, writable: true });
}
