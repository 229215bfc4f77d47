// How long each suite file took in a box, from its console log: the runner stamps every line
// with seconds since the box started ("[  25.29] ..."), and the suite marks each file's start
// (`SNOWFLOCK-MARK suite-file file=NAME`, test/testbox/helpers.ts). A file ends where the next
// begins, the last where the job ended. This is the budget docs/testing.md keeps.
export interface FileTime {
  file: string;
  seconds: number;
}

const stamp = (line: string) => Number(/^\[\s*(\d+(?:\.\d+)?)\]/.exec(line)?.[1] ?? NaN);

export function suiteFileTimes(consoleLog: string): FileTime[] {
  const starts: { file: string; at: number }[] = [];
  let end = NaN;
  for (const line of consoleLog.split('\n')) {
    const at = stamp(line);
    if (Number.isNaN(at)) continue;
    const mark = /SNOWFLOCK-MARK suite-file file=(\S+)/.exec(line);
    if (mark && !starts.some((s) => s.file === mark[1])) starts.push({ file: mark[1]!, at });
    if (/SNOWFLOCK-MARK job-done/.test(line)) end = at;
  }
  if (Number.isNaN(end) && starts.length) end = stamp(consoleLog.trimEnd().split('\n').at(-1) ?? '');
  return starts.map((s, i) => ({ file: s.file, seconds: Math.max(0, (starts[i + 1]?.at ?? end) - s.at) }));
}
