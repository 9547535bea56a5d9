// (the same as tests/browser/chromium.mjs of the browser tier: one launcher once both land)
// Debian's Chromium, headless, for the browser tier: `npx playwright install` cannot download
// a browser here and is not needed. Nothing but the page's own server (loopback) or file is
// reached: the background services are off and every other host name fails to resolve.
import { chromium } from 'playwright-core';

export const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'];

export function launch(job) {
  return chromium.launch({
    executablePath: job.chromium || '/usr/bin/chromium', headless: true, args: FLAGS,
  });
}
