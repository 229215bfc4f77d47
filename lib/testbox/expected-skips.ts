// Which suite files may skip where, and with which reason: each row is one skip condition of a
// file in test/testbox (its `skip`, or memPagingSkip in helpers.ts) and the environment in which
// it is legitimate. Any other skip fails the run (lib/testbox/skips.ts). Last CI: Debian's Xen,
// 1 box: 31 pass, 16 skipped (40, 70 x6, 75, 80 x3, 85 x3, 86, 87); project Xen, 2 boxes: box 1
// runs all 24, box 2 skips the single-host files 70, 80, 85, 87 (13 tests). 67.clone-disk (7
// tests) runs in the stock run (started with --debian-disk); 68.disk-api-hosts (1 test) in the
// custom run (also --debian-disk), and alone in test:testbox:disk-hosts.

/** When a skip is legitimate. */
export type SkipWhen =
  | 'one host' // --hosts 1, and a real host (--on-host)
  | "Debian's Xen" // --xen stock: no mem_paging
  | 'not box 1' // single-host memory-on-demand files run on box 1 only
  | 'box 3 or later' // two-host files use boxes 1 and 2
  | 'real host' // --on-host: whatever this Xen and dom0 lack
  | 'no Debian disk' // a run without --debian-disk: no Debian guest, no disk path in dom0
  | 'always';

export interface ExpectedSkip {
  /** suite file ("87.guest-net"), or "*" for every file */
  file: string;
  when: SkipWhen;
  reason: RegExp;
}

const MEM_PAGING_FILES = ['70.memtap', '80.daemon-xen', '85.guest-api', '87.guest-net'];
const TWO_HOST_FILES = ['66.clone-migrate', '75.memtap-hosts', '86.guest-api-hosts'];

export const EXPECTED_SKIPS: readonly ExpectedSkip[] = [
  // node:test's own word for tests left out by --test-name-pattern: the caller's choice.
  { file: '*', when: 'always', reason: /^test name does not match pattern$/ },
  { file: '40.multihost', when: 'one host', reason: /^single host$/ },
  ...TWO_HOST_FILES.flatMap((file): ExpectedSkip[] => [
    { file, when: 'one host', reason: /^single host$/ },
    { file, when: "Debian's Xen", reason: /^Debian's Xen has no mem_paging$/ },
    { file, when: 'box 3 or later', reason: /^boxes 1 and 2 take part$/ },
  ]),
  ...MEM_PAGING_FILES.flatMap((file): ExpectedSkip[] => [
    { file, when: "Debian's Xen", reason: /^Debian's Xen has no mem_paging \(run with --xen custom\)$/ },
    { file, when: 'not box 1', reason: /^single-host part runs on box 1$/ },
    { file, when: 'real host', reason: /^this Xen has no mem_paging: / },
  ]),
  // 65: xl on clones on box 1; its on-demand cases need mem_paging.
  { file: '65.clone-xl', when: 'not box 1', reason: /^single-host file runs on box 1$/ },
  { file: '65.clone-xl', when: "Debian's Xen", reason: /^Debian's Xen has no mem_paging \(run with --xen custom\)$/ },
  { file: '65.clone-xl', when: 'real host', reason: /^this Xen has no mem_paging: / },
  // 67: the Debian guest with its disk through a family; only with --debian-disk, on box 1.
  { file: '67.clone-disk', when: 'no Debian disk', reason: /^no Debian guest disk \(run with --debian-disk\)$/ },
  { file: '67.clone-disk', when: 'not box 1', reason: /^single-host file runs on box 1$/ },
  { file: '67.clone-disk', when: 'real host', reason: /^this dom0 cannot attach disks: / },
  // 68: the Debian guest forked over two hosts through the daemons; needs --debian-disk too.
  { file: '68.disk-api-hosts', when: 'one host', reason: /^single host$/ },
  { file: '68.disk-api-hosts', when: "Debian's Xen", reason: /^Debian's Xen has no mem_paging$/ },
  { file: '68.disk-api-hosts', when: 'box 3 or later', reason: /^boxes 1 and 2 take part$/ },
  { file: '68.disk-api-hosts', when: 'no Debian disk', reason: /^no Debian guest disk \(run with --debian-disk\)$/ },
  { file: '68.disk-api-hosts', when: 'real host', reason: /^this dom0 cannot attach disks: / },
  // A real dom0 need not have the test box's guest bridge; a test box always does (dom0-init).
  { file: '87.guest-net', when: 'real host', reason: /^no bridge sfbr0 in this dom0$/ },
];
