// Turns any error into one line for the user and the right exit code.
import { isNativeXenError } from '../xen/native.js';
import { XenUnavailableError } from '../xen/control.js';
import { ExitCode } from './output.js';
import { SfError } from '../daemon/errors.js';

export class UsageError extends Error {}

export function reportError(e: unknown, json: boolean): number {
  const unavailable = e instanceof XenUnavailableError || (e instanceof SfError && (e.code === 'channel-closed' || e.code === 'master-unavailable'));
  const code = e instanceof UsageError ? ExitCode.usage : unavailable ? ExitCode.noXen : ExitCode.failed;
  const message = e instanceof Error ? e.message : String(e);
  if (json) {
    const detail = isNativeXenError(e) ? { call: e.call, errno: e.errno, code: e.code, xenLog: e.xenLog } : {};
    process.stdout.write(JSON.stringify({ error: message, ...detail }) + '\n');
  } else {
    process.stderr.write(`snowflock: error: ${message}\n`);
  }
  return code;
}

/** A duration option in seconds, 0..max; names the flag when it is not one. */
export function secondsOption(value: number, flag: string, max = 3600): number {
  if (!Number.isFinite(value) || value < 0 || value > max) throw new UsageError(`${flag} takes 0..${max} seconds, got ${value}`);
  return value;
}
