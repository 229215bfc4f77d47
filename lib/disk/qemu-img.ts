// qemu-img, for what QMP does not do as simply: making a fresh overlay file, checking an
// overlay's metadata, and the tools' versions for doctor.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { DiskError, classify } from './errors.js';

const run = promisify(execFile);
export const QEMU_IMG = process.env.SNOWFLOCK_QEMU_IMG ?? 'qemu-img';

/**
 * The overlay format: qcow2 with subclusters (extended L2 entries). A 64 KiB cluster has 32
 * subclusters of 2 KiB, and allocation is per subcluster, so a write that covers whole
 * subclusters (any aligned 4 KiB write) allocates without reading the backing: SnowFlock's
 * disk avoidance heuristic, done by QEMU.
 */
export const OVERLAY_OPTIONS = 'extended_l2=on,cluster_size=65536';
export const SUBCLUSTER_BYTES = 65536 / 32;

/** Creates a sparse qcow2 overlay of `sizeBytes` at `file` (which must not exist). */
export async function createOverlay(file: string, sizeBytes: number, options = OVERLAY_OPTIONS): Promise<void> {
  if (existsSync(file)) throw new DiskError('exists', `overlay ${file} exists already`);
  try {
    await run(QEMU_IMG, ['create', '-q', '-f', 'qcow2', '-o', options, file, String(sizeBytes)]);
  } catch (e) {
    throw classify(new Error(stderrOf(e)), `creating overlay ${file}`);
  }
}

export interface ImageCheck {
  file: string;
  ok: boolean;
  corruptions: number;
  leaks: number;
  checkErrors: number;
  /** what qemu-img said, when not ok */
  detail?: string;
}

/**
 * `qemu-img check` of a qcow2 file. Only meaningful on an image nobody writes (a frozen
 * slice's overlay): it reads the file as it is on disk (-U, the daemon holds it open).
 * `repairLeaks` (only on a file no daemon holds) frees clusters a killed daemon had allocated
 * but not yet referenced.
 */
export async function checkOverlay(file: string, o: { repairLeaks?: boolean } = {}): Promise<ImageCheck> {
  let out: string;
  let stderr = '';
  try {
    out = (await run(QEMU_IMG, ['check', ...(o.repairLeaks ? ['-r', 'leaks'] : ['-U']), '-f', 'qcow2', '--output=json', file])).stdout;
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; code?: number };
    // exit 2: corruptions, 3: leaks only; both still print the JSON report (the errors go to stderr)
    if (err.stdout && (err.code === 2 || err.code === 3)) {
      out = err.stdout;
      stderr = err.stderr ?? '';
    } else return { file, ok: false, corruptions: 0, leaks: 0, checkErrors: 1, detail: `qemu-img check: ${stderrOf(e)}` };
  }
  // after a repair qemu-img checks again: these are the counts after it
  const r = JSON.parse(out) as { corruptions?: number; leaks?: number; 'check-errors'?: number };
  const corruptions = r.corruptions ?? 0;
  const leaks = r.leaks ?? 0;
  const checkErrors = r['check-errors'] ?? 0;
  const ok = corruptions === 0 && checkErrors === 0;
  // qemu-img's first error line says what is wrong, e.g. a cluster past the end of a truncated file
  const first = stderr.split('\n').find((l) => l.startsWith('ERROR'));
  const detail = `qemu-img check: ${corruptions} corruptions, ${leaks} leaked clusters, ${checkErrors} check errors${first ? ` (${first})` : ''}`;
  return { file, ok, corruptions, leaks, checkErrors, ...(ok ? {} : { detail }) };
}

/** `qemu-img info` of an image: its format and virtual size (for a parent's image). */
export async function imageInfo(file: string): Promise<{ format: string; virtualSize: number; backing?: string }> {
  try {
    const out = (await run(QEMU_IMG, ['info', '-U', '--output=json', file])).stdout;
    const r = JSON.parse(out) as { format: string; 'virtual-size': number; 'backing-filename'?: string };
    return { format: r.format, virtualSize: r['virtual-size'], ...(r['backing-filename'] ? { backing: r['backing-filename'] } : {}) };
  } catch (e) {
    throw classify(new Error(stderrOf(e)), `reading image ${file}`);
  }
}

/** First line of `tool --version`, or undefined when the tool is missing. */
export async function toolVersion(tool: string): Promise<string | undefined> {
  try {
    return (await run(tool, ['--version'], { timeout: 10_000 })).stdout.split('\n')[0]?.trim();
  } catch {
    return undefined;
  }
}

function stderrOf(e: unknown): string {
  const err = e as { stderr?: string; message?: string };
  return (err.stderr ?? '').trim() || err.message || String(e);
}
