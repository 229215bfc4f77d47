// Doctor checks of the test box artifacts in the cache.
import { existsSync } from 'node:fs';
import { artifacts, testboxDir } from '../testbox/paths.js';
import { check, type Check } from './check.js';

export function testboxChecks(): Check[] {
  const have = (p: string) => existsSync(p);
  return [
    have(artifacts.hypervisor('stock')) && have(artifacts.kernel())
      ? check('testbox.stock', 'testbox', 'test box: Debian Xen', 'ok', `cached in ${testboxDir()}`)
      : check('testbox.stock', 'testbox', 'test box: Debian Xen', 'skip', 'not fetched yet (snowflock testbox prepare)'),
    have(artifacts.hypervisor('custom'))
      ? check('testbox.custom', 'testbox', 'test box: project Xen (MEM_PAGING)', 'ok', artifacts.hypervisor('custom'))
      : check('testbox.custom', 'testbox', 'test box: project Xen (MEM_PAGING)', 'skip', 'not built yet (snowflock testbox prepare --xen custom)'),
  ];
}
