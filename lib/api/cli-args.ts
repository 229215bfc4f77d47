/**
 * The command line of the sf_* wrapper for shell scripts. One entry point with subcommands
 * (`cli.js clone T`); the sf- names work too (`cli.js sf-clone T`, or a symlink named sf-clone).
 * Hand-parsed: it runs inside small guests, and its grammar is six words.
 */
export type Op = 'request-ticket' | 'clone' | 'exit' | 'join' | 'kill' | 'status' | 'hosts' | 'list';

export interface Parsed {
  op: Op;
  /** request-ticket: n as given (the daemon refuses n <= 0 and fractions). */
  n?: number;
  hierarchical?: boolean;
  ticket?: string;
  json: boolean;
  channel?: string;
  domid?: string;
}

export type ParseResult = { ok: true; args: Parsed } | { ok: false; help: true } | { ok: false; help: false; error: string };

const TICKET_OPS: readonly Op[] = ['clone', 'join', 'kill'];
const OPS: readonly Op[] = ['request-ticket', 'clone', 'exit', 'join', 'kill', 'status', 'hosts', 'list'];

export const USAGE = `usage: sf <command> [--json] [--channel vchan|vchan:NAME|tcp://HOST:PORT] [--domid D]

  request-ticket N [--hierarchical]   ask for up to N clones; prints the ticket id
  clone TICKET                        fork this VM; prints the vmid: 0 in the parent, 1..m in each clone
  exit                                (in a clone) this clone is done
  join TICKET                         (in the parent) wait for every clone to exit; they are destroyed
  kill TICKET                         (in the parent) destroy the clones now
  status | hosts | list               this VM's role, the cluster's hosts, this VM's family

Each command also answers to its sf- name (sf-clone ...). --json prints the daemon's full answer.
Environment: SNOWFLOCK_CHANNEL (default vchan), SNOWFLOCK_DOMID (the domid a TCP channel claims).
Exit codes: 0 ok, 1 refused or failed, 2 bad usage, 3 the host daemon or the master cannot be reached,
4 join/kill finished but some clones were lost or not confirmed destroyed.`;

/** invokedAs: the program's file name, so a symlink named sf-clone works. */
export function parseArgs(argv: readonly string[], invokedAs = ''): ParseResult {
  const words: string[] = [];
  const args: Partial<Parsed> & { json: boolean } = { json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') return { ok: false, help: true };
    else if (a === '--json') args.json = true;
    else if (a === '--hierarchical') args.hierarchical = true;
    else if (a === '--channel' || a === '--domid') {
      const v = argv[++i];
      if (v === undefined) return fail(`${a} needs a value`);
      if (a === '--channel') args.channel = v;
      else args.domid = v;
    } else if (a.startsWith('--channel=')) args.channel = a.slice('--channel='.length);
    else if (a.startsWith('--domid=')) args.domid = a.slice('--domid='.length);
    else if (a.startsWith('--') && a.length > 2) return fail(`unknown option ${a}`);
    else words.push(a);
  }
  const base = invokedAs.replace(/\.(c|m)?js$/, '');
  if (base.startsWith('sf-')) words.unshift(base);
  const word = words.shift();
  if (word === undefined) return fail('say which command');
  const op = word.replace(/^sf-/, '') as Op;
  if (!OPS.includes(op)) return fail(`unknown command ${word}`);
  if (args.hierarchical && op !== 'request-ticket') return fail('--hierarchical belongs to request-ticket');
  if (op === 'request-ticket') {
    const n = words.shift();
    if (n === undefined || n.trim() === '' || !Number.isFinite(Number(n))) return fail(`request-ticket needs a number N, got ${n ?? 'nothing'}`);
    args.n = Number(n);
  } else if (TICKET_OPS.includes(op)) {
    const t = words.shift();
    if (t === undefined) return fail(`${op} needs a TICKET`);
    args.ticket = t;
  }
  if (words.length > 0) return fail(`unexpected argument ${words[0]}`);
  return { ok: true, args: { ...args, op } };
}

function fail(error: string): ParseResult {
  return { ok: false, help: false, error };
}
