// A combination that cannot work is refused before the daemon starts: with the Xen backend a
// clone's vifs stay off the bridge until sf_clone reports network_ready, which a guest on TCP
// can only send over that network, so `--guests tcp --backend xen` would leave every clone stuck.
import yargs from 'yargs';
import { expect, it } from 'vitest';
import { daemonCommand } from '../../../lib/daemon/command.js';

async function cli(args: string[]) {
  return daemonCommand(yargs(args).strict().exitProcess(false).fail((msg, err) => { throw err ?? new Error(msg); })).parseAsync();
}

it('daemon host refuses --guests tcp with --backend xen, naming why and what to use', async () => {
  const base = ['daemon', 'host', '--name', 'h1', '--key-file', '/nonexistent/key', '--master', 'm', '--vcpus', '2', '--memory-mib', '1024', '--advertise', '10.0.0.1'];
  await expect(cli([...base, '--backend', 'xen', '--guests', 'tcp', '--guest-address', '10.0.0.5=7'])).rejects.toThrow(
    /--guests tcp cannot serve --backend xen: .*clone.*bridge.*--guests vchan/,
  );
});

it('daemon host refuses a --guest-address without a guest domid (IP= would be dom0)', async () => {
  const base = ['daemon', 'host', '--name', 'h1', '--key-file', '/nonexistent/key', '--master', 'm', '--vcpus', '2', '--memory-mib', '1024', '--backend', 'fake', '--guests', 'tcp'];
  for (const bad of ['10.0.0.5=', '10.0.0.5=0', '10.0.0.5=x']) {
    await expect(cli([...base, '--guest-address', bad])).rejects.toThrow(/bad --guest-address .*: use IP=DOMID with a guest's domid/);
  }
});
