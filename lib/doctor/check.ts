// One line of `snowflock doctor`: what was checked, what was found, and why it matters.
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface Check {
  /** stable id scripts can require, e.g. "xen.mem-paging" */
  id: string;
  group: 'addon' | 'xen' | 'host' | 'testbox' | 'network' | 'disk';
  title: string;
  status: CheckStatus;
  detail: string;
}

export function check(id: string, group: Check['group'], title: string, status: CheckStatus, detail: string): Check {
  return { id, group, title, status, detail };
}
