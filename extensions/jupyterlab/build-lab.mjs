// Build the prebuilt (federated) extension into labextension/ with JupyterLab's own builder
// (@jupyterlab/builder's build-labextension), against the JupyterLab core it targets
// (@jupyterlab/core-meta): what `jupyter labextension build .` does, without needing the
// Python jupyterlab package in the wheel's isolated build environment.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const core = mkdtempSync(join(tmpdir(), 'nbcloud-core-'));
try {
  // the builder reads the core's package data as `package.json` in --core-path
  const meta = dirname(require.resolve('@jupyterlab/core-meta/package.json'));
  copyFileSync(join(meta, 'core.package.json'), join(core, 'package.json'));
  const builder = require.resolve('@jupyterlab/builder/lib/build-labextension.js');
  const mode = process.argv.includes('--development') ? ['--development'] : [];
  execFileSync(process.execPath, [builder, ...mode, '--core-path', core, '.'],
    { stdio: 'inherit' });
} finally {
  rmSync(core, { recursive: true, force: true });
}
