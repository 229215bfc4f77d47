// A guest's console as xenconsoled logs it (xenconsoled --log=guest; on Debian set
// XENCONSOLED_TRACE=guest in /etc/default/xencommons).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export function consoleLogDir(): string {
  return process.env.SNOWFLOCK_CONSOLE_LOG_DIR ?? '/var/log/xen/console';
}

export function consoleLogPath(name: string): string {
  return join(consoleLogDir(), `guest-${name}.log`);
}

export function readConsole(name: string): string {
  const path = consoleLogPath(name);
  return existsSync(path) ? readFileSync(path, 'utf8') : '';
}

/** Waits until the guest's console matches; returns all matches of the pattern. */
export async function waitForConsole(name: string, pattern: RegExp, timeoutMs: number, minMatches = 1): Promise<RegExpMatchArray[]> {
  const global = new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : pattern.flags + 'g');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const matches = [...readConsole(name).matchAll(global)];
    if (matches.length >= minMatches) return matches;
    if (Date.now() > deadline) {
      const tail = readConsole(name).split('\n').slice(-15).join('\n');
      throw new Error(`console of ${name} did not show ${pattern} ${minMatches}x within ${timeoutMs} ms; last lines:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
