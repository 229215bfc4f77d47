// One DiskFamily handle per family per process. A family's daemon has one owner monitor, and QMP
// serves one client at a time: a second DiskFamily.open of the same family, in this process or
// another, waits for the first to close (10 s, then "in-use"). So every user opens a family
// through useFamily, which shares one handle within the process and closes it when the last
// user lets go; other processes get the monitor between uses.
import { DiskFamily } from './family.js';

export interface FamilyOptions {
  /** where families live (DiskFamily's stateDir) */
  stateDir?: string;
  log?: (message: string) => void;
}

const shared = new Map<string, { family: Promise<DiskFamily>; users: number }>();

export async function useFamily<T>(name: string, o: FamilyOptions, body: (f: DiskFamily) => Promise<T>): Promise<T> {
  const key = `${o.stateDir ?? ''}\0${name}`;
  let entry = shared.get(key);
  if (!entry) {
    entry = { family: DiskFamily.open({ family: name, ...(o.stateDir ? { stateDir: o.stateDir } : {}), ...(o.log ? { log: o.log } : {}) }), users: 0 };
    shared.set(key, entry);
  }
  entry.users++;
  try {
    return await body(await entry.family);
  } finally {
    entry.users--;
    if (entry.users === 0) {
      shared.delete(key);
      await entry.family.then((f) => f.close(), () => undefined);
    }
  }
}
