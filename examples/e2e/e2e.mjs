// End-to-end test of the demo in headless Chromium (the Debian package at /usr/bin/chromium,
// driven over the DevTools protocol by playwright-core; no browser download).
//
// Usage: node e2e.mjs http://127.0.0.1:PORT
//
// For each transport mode (UDP, then ICE forced over TCP): two pages join room A and one page
// joins room B, all publishing the fake camera and microphone. Within 20 seconds each page of
// room A must report, from RTCPeerConnection.getStats(), more than 40 video frames decoded and
// more than 40 audio packets received from the other; the page in room B must receive nothing.
// Then once more over UDP with the camera sent as three simulcast encodings.
// The fake microphone plays a steady tone (a WAV written here), so the server's audio level
// observer must name a room A peer as the active speaker to both room A pages, and never a room
// A peer to room B.
// Prints the DTLS version, DTLS role and SRTP profile Chromium negotiated.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const base = process.argv[2];
if (!base) {
  console.error('usage: node e2e.mjs http://127.0.0.1:PORT');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const DEADLINE_MS = Number(process.env.E2E_DEADLINE_MS || 20_000);
const MIN_FRAMES = 40;
const MIN_AUDIO_PACKETS = 40;

/** A 2-second 440 Hz tone at about -10 dBFS, 48 kHz mono 16-bit PCM, for the fake microphone. */
function toneWav(file) {
  const rate = 48_000;
  const samples = rate * 2;
  const data = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) {
    data.writeInt16LE(Math.round(0.3 * 32767 * Math.sin((2 * Math.PI * 440 * i) / rate)), i * 2);
  }
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVEfmt ', 8);
  header.writeUInt32LE(16, 16); // fmt chunk size
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28); // byte rate
  header.writeUInt16LE(2, 32); // block align
  header.writeUInt16LE(16, 34); // bits per sample
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  fs.writeFileSync(file, Buffer.concat([header, data]));
  return file;
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfu-e2e-chromium-'));
const tone = toneWav(path.join(userDataDir, 'tone.wav'));

const args = [
  `--use-file-for-fake-audio-capture=${tone}`,
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--autoplay-policy=no-user-gesture-required',
  // Let Chromium use 127.0.0.1 as a host candidate too, so the test needs no other interface.
  '--allow-loopback-in-peer-connection',
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
];

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function fromPeer(stats, peerId, kind) {
  return stats.remote.filter((r) => r.peerId === peerId && r.kind === kind);
}

function sum(list, key) {
  return list.reduce((a, r) => a + (r[key] || 0), 0);
}

/** RTCTransportStats.tlsVersion is the record version in hex. */
function dtlsVersion(hex) {
  const names = { FEFF: '1.0', FEFD: '1.2', FEFC: '1.3' };
  return names[String(hex).toUpperCase()] ? `${names[String(hex).toUpperCase()]} (${hex})` : String(hex);
}

/** A one-line summary of the RTP parameters Chromium produced with. */
function producedSummary(x) {
  const r = x.rtpParameters;
  const codecs = r.codecs.map((c) => `${c.mimeType}/${c.payloadType}`).join(' ');
  const ext = r.headerExtensions.map((e) => `${e.id}=${e.uri.replace(/^.*[/:]/, '')}`).join(' ');
  const enc = r.encodings.map((e) => JSON.stringify(e)).join(' ');
  return `${x.kind}: mid ${r.mid}, codecs ${codecs}; extensions ${ext}; encodings ${enc}`;
}

/** What a page saw, for a failure message. */
function describe(name, s, logs) {
  if (!s) return `  ${name}: no stats (page broken?)\n${logs.slice(-15).map((l) => `      ${l}`).join('\n')}`;
  const remote = s.remote.length
    ? s.remote
        .map((r) => `      from ${r.peerId} ${r.kind}: ${r.packetsReceived} packets, ${r.bytesReceived} bytes, ` +
          `${r.framesDecoded} frames decoded, ${r.bitrate} bit/s${r.paused ? ' (paused)' : ''}`)
        .join('\n')
    : '      (no remote streams)';
  const tr = (t) => (t ? `ICE ${t.iceState}, DTLS ${t.dtlsState} ${t.tlsVersion || ''} ${t.srtpCipher || ''}, ` +
    `path ${t.localProtocol || '?'} -> ${t.remoteAddress || '?'} (${t.remoteProtocol || '?'})` : 'none');
  return [
    `  ${name} (room ${s.room}, peer ${s.peerId}, joined ${s.joined}):`,
    `    send transport: ${s.sendState}; ${tr(s.send)}`,
    `    recv transport: ${s.recvState}; ${tr(s.recv)}`,
    remote,
    s.errors.length ? `    errors: ${s.errors.join(' | ')}` : '    errors: none',
    `    last page log:\n${logs.slice(-12).map((l) => `      ${l}`).join('\n')}`,
  ].join('\n');
}

async function openPage(context, name, room, peer, { forceTcp, simulcast }) {
  const page = await context.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  const extra = process.env.E2E_PAGE_PARAMS ? `&${process.env.E2E_PAGE_PARAMS}` : '';
  const options = `${forceTcp ? '&forceTcp=1' : ''}${simulcast ? '&simulcast=1' : ''}`;
  const url = `${base}/?room=${room}&peer=${peer}&autojoin=1${options}${extra}`;
  await page.goto(url);
  return { name, page, peer, room, logs, stats: null };
}

async function collect(p) {
  try {
    p.stats = await p.page.evaluate(() => window.sfuDemo.stats());
  } catch (e) {
    p.logs.push(`stats failed: ${e.message}`);
  }
  return p.stats;
}

async function scenario(browser, mode, options) {
  const { forceTcp } = options;
  const tag = `${mode}-${Date.now().toString(36)}`;
  const roomA = `e2e-${tag}-A`;
  const roomB = `e2e-${tag}-B`;
  const context = await browser.newContext();
  const started = Date.now();
  const a1 = await openPage(context, 'page 1', roomA, 'alice', options);
  const a2 = await openPage(context, 'page 2', roomA, 'bob', options);
  const b1 = await openPage(context, 'page 3', roomB, 'carol', options);
  const pages = [a1, a2, b1];
  const pairs = [[a1, a2], [a2, a1]];
  const roomAPeers = [a1.peer, a2.peer];
  const heardInA = (p) => roomAPeers.some((peer) => (p.stats.activeSpeakers || {})[peer] > 0);
  const ok = () =>
    pairs.every(([me, other]) => {
      if (!me.stats) return false;
      const v = fromPeer(me.stats, other.peer, 'video');
      const a = fromPeer(me.stats, other.peer, 'audio');
      return sum(v, 'framesDecoded') > MIN_FRAMES && sum(a, 'packetsReceived') > MIN_AUDIO_PACKETS &&
        heardInA(me);
    });
  let passed = false;
  while (Date.now() - started < DEADLINE_MS) {
    await Promise.all(pages.map(collect));
    if (ok()) {
      passed = true;
      break;
    }
    await sleep(500);
  }
  await Promise.all(pages.map(collect));
  const elapsed = ((Date.now() - started) / 1000).toFixed(1);
  const problems = [];
  if (!passed) {
    problems.push(`media did not flow in room A within ${DEADLINE_MS / 1000} s ` +
      `(need > ${MIN_FRAMES} video frames decoded and > ${MIN_AUDIO_PACKETS} audio packets from the other page, ` +
      'and an active speaker of room A named to both pages)');
  }
  if (b1.stats && roomAPeers.some((peer) => (b1.stats.activeSpeakers || {})[peer])) {
    problems.push('page 3 (room B) was told a room A peer is its active speaker');
  }
  // Room B must receive nothing, and room A nothing from room B.
  if (b1.stats && (b1.stats.remote.length || sum(b1.stats.remote, 'bytesReceived') > 0)) {
    problems.push(`page 3 (room B) received ${b1.stats.remote.length} streams from another room`);
  }
  for (const p of [a1, a2]) {
    if (p.stats && p.stats.remote.some((r) => r.peerId === b1.peer)) {
      problems.push(`${p.name} (room A) received a stream of room B's peer`);
    }
  }
  if (!b1.stats || !b1.stats.joined || b1.stats.errors.length) {
    problems.push('page 3 (room B) did not join cleanly');
  }
  for (const p of pages) {
    const t = p.stats && p.stats.recv;
    if (passed && forceTcp && p !== b1 && t && t.remoteProtocol !== 'tcp') {
      problems.push(`${p.name}: forceTcp, but the selected candidate pair uses ${t.remoteProtocol}`);
    }
  }

  console.log(`\n== ${mode.toUpperCase()}: rooms ${roomA} / ${roomB}, ${elapsed} s`);
  for (const [me, other] of pairs) {
    if (!me.stats) continue;
    const v = fromPeer(me.stats, other.peer, 'video');
    const a = fromPeer(me.stats, other.peer, 'audio');
    console.log(`  ${me.name} (${me.peer}) from ${other.peer}: ${sum(v, 'framesDecoded')} video frames decoded ` +
      `(${sum(v, 'frameWidth') || '?'} px wide, ${sum(v, 'bitrate')} bit/s), ` +
      `${sum(a, 'packetsReceived')} audio packets received`);
  }
  if (b1.stats) console.log(`  page 3 (${b1.peer}, room B): ${b1.stats.remote.length} remote streams (expected 0)`);
  for (const p of pages) {
    if (p.stats) {
      console.log(`  ${p.name} active speaker reports: ${JSON.stringify(p.stats.activeSpeakers || {})}` +
        (p.stats.loudest !== undefined ? `, loudest ${p.stats.loudest} dBov` : ''));
    }
  }
  const seen = new Set();
  for (const p of pages) {
    for (const [dir, t] of [['send', p.stats && p.stats.send], ['recv', p.stats && p.stats.recv]]) {
      if (!t) continue;
      const line = `DTLS ${dtlsVersion(t.tlsVersion)} (Chromium is DTLS ${t.dtlsRole}), cipher ${t.dtlsCipher}, ` +
        `SRTP profile ${t.srtpCipher}, ICE over ${t.localProtocol}/${t.remoteProtocol} to ${t.remoteAddress}`;
      const key = `${line.replace(/ to .*/, '')}`;
      if (!seen.has(key)) {
        seen.add(key);
        console.log(`  ${p.name} ${dir}: ${line}`);
      }
    }
  }
  const produced = (a1.stats && a1.stats.produced) || [];
  for (const x of produced) console.log(`  page 1 produced ${producedSummary(x)}`);
  if (process.env.E2E_VERBOSE) {
    for (const x of produced) console.log(`  page 1 produce rtpParameters ${x.kind}: ${JSON.stringify(x.rtpParameters)}`);
  }
  if (problems.length) {
    console.log(`\nFAILED (${mode}):\n  - ${problems.join('\n  - ')}\n\nWhat each page saw:`);
    for (const p of pages) console.log(describe(p.name, p.stats, p.logs));
    if (produced.length) {
      console.log('\n  page 1 produce rtpParameters (what Chromium sent):');
      for (const x of produced) console.log(`    ${x.kind}: ${JSON.stringify(x.rtpParameters)}`);
    }
  }
  // Leave explicitly (the server closes the peers' transports), then close the pages.
  await Promise.all(pages.map((p) => p.page.evaluate(() => window.sfuDemo.leave()).catch(() => {})));
  await context.close();
  return problems.length === 0;
}

let browser;
let allOk = false;
try {
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: false, // --headless=new is in args
    args,
    ignoreDefaultArgs: ['--mute-audio'],
    timeout: 60_000,
  });
  browser = { newContext: async () => context, close: () => context.close() };
  // A persistent context is one browser context; each scenario reuses it and closes its pages.
  browser.newContext = async () => ({
    newPage: () => context.newPage(),
    close: async () => {
      for (const p of context.pages()) await p.close().catch(() => {});
    },
  });
  console.log(`Chromium ${context.browser() ? context.browser().version() : ''} at ${executablePath}`);
  const udp = await scenario(browser, 'udp', { forceTcp: false });
  const tcp = await scenario(browser, 'tcp', { forceTcp: true });
  // The camera in three simulcast encodings (rid-based), over UDP.
  const simulcast = await scenario(browser, 'simulcast', { forceTcp: false, simulcast: true });
  allOk = udp && tcp && simulcast;
} catch (e) {
  console.error(`e2e: ${e.stack || e}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
console.log(allOk ? '\ne2e: PASS' : '\ne2e: FAIL');
process.exit(allOk ? 0 : 1);
