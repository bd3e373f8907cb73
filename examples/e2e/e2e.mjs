// End-to-end test of the demo in headless Chromium (the Debian package at /usr/bin/chromium,
// driven over the DevTools protocol by playwright-core; no browser download).
//
// Usage: node e2e.mjs http://127.0.0.1:PORT   (or https://… for the HTTPS run)
//
// Each page publishes the page's test source (URL parameter testSource=N, see examples/web/src/
// app.js): a canvas of colour N with a frame counter strip, and a tone of 300 + 200 N Hz that is
// loud and quiet in turns (odd and even N alternate every 1.5 s). Nothing here trusts the labels
// signaling puts on streams: the pages read their received video back from the decoded frames and
// their received audio through a WebAudio analyser, and the sender is recognised by its content.
//
// For each transport mode (UDP, then ICE forced over TCP, then UDP with the camera sent as three
// simulcast encodings): pages 1 and 2 join room A and pages 3 and 4 join room B, both rooms on the
// same worker (the demo server runs with --workers 1, and every page checks the worker its room
// lives on from the join reply). Within the deadline, each page must, for the other page of its
// room:
//   - decode its video: > 40 frames decoded (inbound-rtp), the decoded pixels showing the other
//     page's colour and a frame counter that moves (>= 5 distinct values);
//   - decode its audio: > 40 packets, and the analyser hearing the other page's tone (level above
//     -50 dBFS, dominant frequency within 30 Hz of its frequency);
//   - be told by the server's active speaker detection that the other page is speaking.
// And at the end, for every page:
//   - no decoded picture or tone of any page but the one its consumer is labelled with (not its
//     own, not one of the other room);
//   - never told that a page of the other room is the active speaker;
//   - on its receiving RTCPeerConnection, exactly the inbound RTP streams of the consumers it asked
//     for (by SSRC), and on the receive transport no more RTP packets than those streams account
//     for (browser side: transport packetsReceived; server side: the transport's datagrams sent
//     against its consumers' packets sent), which is where a stream of the other room, dropped by
//     the browser as unknown, would show;
//   - ICE over TCP when the page asked for it.
// The simulcast run (room A's pages send three encodings, 160, 320 and 640 px wide; room B's one)
// then asks for the lowest layer and waits for the decoded width (inbound-rtp frameWidth and the
// probed frames, of the right sender) to become 160 px, then for the top layer and the width of
// the widest encoding the sender is sending at the time, which must be wider than 160 px; then
// the server caps each room A page's receive transport at 300 kbit/s (setMaxOutgoingBitrate)
// and the decoded width must fall within 5 s, and come back once the cap is lifted.
// The svc run sends room A's cameras in VP9 with scalability mode L3T3_KEY (one stream whose
// spatial layers the server keeps or drops per consumer): asked for spatial layer 0, the decoded
// width must become the lowest spatial layer's (320 px: Chromium sends two spatial layers of a
// 640x360 source), then the full width again.
// The UDP run also checks what Chromium makes of the server's RTCP (its pages allow 2.5 Mbit/s of
// video): on the receiving connection a remote-outbound-rtp entry (from the server's sender
// reports) for every inbound stream and no packets lost; on the sending connection a
// remote-inbound-rtp entry with a round-trip time (from the server's receiver reports) for every
// outbound stream, and a send-side bandwidth estimate (availableOutgoingBitrate of the candidate
// pair, which Chromium's estimator derives from the server's transport-wide-cc feedback) above
// 1 Mbit/s within 10 s of the page opening.
// Then, in every run, the chat (a data channel per page, mediasoup-client's produceData and
// consumeData): once every page has its chat channel open and one open for each other page of its
// room, a message is typed into the first page of each room and into the second page of room A
// (the other direction), each with a unique text; each must be shown, once, on the other page of
// its room within CHAT_DEADLINE_MS, and after CHAT_ABSENCE_MS more on no page of the other room.
// Every data channel a page receives must come from a page of its room.
// The DTLS-client run (one room of two pages) creates the server's transports as DTLS client
// (page parameter sfuDtlsRole=client), so Chromium is the DTLS server and picks the SRTP profile:
// it must be AES_CM_128_HMAC_SHA1_80 on both transports, in Chromium's stats and the server's,
// with video and audio arriving both ways as above.
// The HTTPS run (one room of two pages, not in the default list; the URL must be the demo
// server's https:// one, its certificate self-signed) checks that the pages were loaded over
// HTTPS and signal over WSS, with video and audio arriving both ways as above.
// The ffmpeg run: see ffmpegScenario below.
// E2E_SCENARIOS=udp,tcp,simulcast,svc,dtls-client,ffmpeg,https picks the runs; E2E_CHROMIUM_ARGS adds Chromium
// flags (e.g. "--enable-logging=stderr --vmodule=*/webrtc/*=1" and DEBUG=pw:browser for
// libwebrtc's log: probe results, bandwidth estimates).
// Prints the DTLS version, DTLS role and SRTP profile Chromium negotiated.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { chromium } from 'playwright-core';

const base = process.argv[2];
if (!base) {
  console.error('usage: node e2e.mjs http://127.0.0.1:PORT');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const DEADLINE_MS = Number(process.env.E2E_DEADLINE_MS || 20_000);
const LAYER_DEADLINE_MS = Number(process.env.E2E_LAYER_DEADLINE_MS || 15_000);
const MIN_FRAMES = 40;
const MIN_AUDIO_PACKETS = 40;
// Decoded frames that must show the sender's colour, and distinct frame counter values seen.
const MIN_IDENTIFIED_FRAMES = 4;
const MIN_COUNTERS = 5;
// Analyser readings above -50 dBFS, and how close the dominant frequency must be.
const MIN_LOUD_READINGS = 3;
const FREQ_TOLERANCE_HZ = 30;
// Packets on a receive transport that its inbound RTP streams do not account for (RTCP, STUN,
// DTLS, retransmissions), allowed before the test calls it a leak: a base plus a rate over the
// scenario's duration (a healthy run shows about 1 a second; one leaked audio stream is 50).
const UNACCOUNTED_BASE = 40;
const UNACCOUNTED_PER_SECOND = 5;
// The width of the test source's lowest simulcast layer (the top one is 640).
const LOW_WIDTH = 160;
// The width of its lowest VP9 spatial layer: Chromium keeps spatial layers at least 320x180
// (its minimum for VP9), so a 640x360 source asked for L3T3_KEY sends two, 320 and 640.
const SVC_LOW_WIDTH = 320;
// The simulcast run caps what the server sends each room A page (its receive transport's
// setMaxOutgoingBitrate) at BITRATE_CAP: the decoded width must fall within
// BITRATE_CAP_DEADLINE_MS, and after the cap is lifted come back within BITRATE_LIFT_DEADLINE_MS
// (the estimate climbs back from the cap with the receiver's feedback).
const BITRATE_CAP = 300_000;
const BITRATE_CAP_DEADLINE_MS = 5_000;
const BITRATE_LIFT_DEADLINE_MS = Number(process.env.E2E_BITRATE_LIFT_DEADLINE_MS || 40_000);
// The send-side bandwidth estimate the UDP run must see, and how soon after the page opened.
const BWE_TARGET = 1_000_000;
const BWE_DEADLINE_MS = 10_000;
// The video limit of the UDP run's pages (kbit/s): Chromium caps its estimate near the sum of
// its streams' limits, so the default 800 kbit/s could never show an estimate above 1 Mbit/s.
const RTCP_RUN_MAX_BITRATE = 2500;
// The chat: how long the pages have to open their channels, how long a message has to arrive,
// and how long the other room is then watched for it.
const CHAT_READY_MS = 10_000;
const CHAT_DEADLINE_MS = 5_000;
const CHAT_ABSENCE_MS = 2_000;
// The SRTP profile Chromium picks as DTLS server (stats spell it one of these ways).
const AES_CM_NAMES = ['AES_CM_128_HMAC_SHA1_80', 'SRTP_AES128_CM_HMAC_SHA1_80', 'SRTP_AES128_CM_SHA1_80'];

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfu-e2e-chromium-'));

const args = [
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
  // Send all three simulcast layers of a 640x360 source (by default Chromium sends two).
  '--force-fieldtrials=WebRTC-LegacySimulcastLayerLimit/Disabled/',
  ...(process.env.E2E_CHROMIUM_ARGS ? process.env.E2E_CHROMIUM_ARGS.split(' ') : []),
];

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function sum(list, key) {
  return list.reduce((a, r) => a + (r[key] || 0), 0);
}

/** The colour and tone of test source n (as examples/web/src/app.js draws them). */
const PALETTE = ['red', 'green', 'blue', 'yellow', 'magenta', 'cyan'];
function identityName(n) {
  return n ? `#${n} (${PALETTE[(n - 1) % PALETTE.length]}, ${300 + 200 * n} Hz)` : 'unrecognised';
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

function probeText(r) {
  const p = r.probe;
  if (!p) return 'not probed';
  if (r.kind === 'video') {
    const ids = Object.entries(p.identities).map(([n, c]) => `${c}x ${identityName(Number(n))}`).join(', ');
    return `decoded ${p.width}x${p.height}, last colour rgb(${p.lastColor})${ids ? `, ${ids}` : ''}, ` +
      `${p.counters} counter values`;
  }
  return `${p.loud}/${p.samples} readings above -50 dBFS (max ${p.maxDbfs} dBFS), dominant ${p.dominantFreq} Hz, ` +
    `audio context ${p.contextState}`;
}

/** A page's outbound video encodings: rid, width, frames, why the quality is limited. */
function sentText(s) {
  return (s.sendOutbound || []).filter((o) => o.kind === 'video')
    .map((o) => `${o.rid || 'video'} ${o.frameWidth} px ${o.framesEncoded} frames${o.active === false ? ' inactive' : ''}` +
      `${o.qualityLimitationReason && o.qualityLimitationReason !== 'none' ? ` (limited by ${o.qualityLimitationReason})` : ''}` +
      `${o.targetBitrate ? ` target ${o.targetBitrate} bit/s` : ''}`)
    .join(', ') || 'none';
}

/** What a page saw, for a failure message. */
function describe(p) {
  const s = p.stats;
  const logs = p.logs;
  if (!s) return `  ${p.name}: no stats (page broken?)\n${logs.slice(-15).map((l) => `      ${l}`).join('\n')}`;
  const remote = s.remote.length
    ? s.remote
        .map((r) => `      from ${r.peerId} ${r.kind} (ssrc ${r.ssrc}): ${r.packetsReceived} packets, ${r.bytesReceived} bytes, ` +
          `${r.framesDecoded} frames decoded, ${r.bitrate} bit/s${r.paused ? ' (paused)' : ''}; ${probeText(r)}`)
        .join('\n')
    : '      (no remote streams)';
  const tr = (t) => (t ? `ICE ${t.iceState}, DTLS ${t.dtlsState} ${t.tlsVersion || ''} ${t.srtpCipher || ''}, ` +
    `path ${t.localProtocol || '?'} -> ${t.remoteAddress || '?'} (${t.remoteProtocol || '?'})` : 'none');
  return [
    `  ${p.name} (room ${s.room}, peer ${s.peerId}, test source ${identityName(p.index)}, joined ${s.joined}, ` +
      `placement ${JSON.stringify(s.placement)}):`,
    `    send transport: ${s.sendState}; ${tr(s.send)}`,
    `    recv transport: ${s.recvState}; ${tr(s.recv)}`,
    remote,
    `    outbound-rtp on the sending connection: ${sentText(s)}`,
    `    inbound-rtp on the receiving connection: ${JSON.stringify((s.recvInbound || []).map((i) => [i.kind, i.ssrc, i.packetsReceived]))}`,
    `    active speaker reports: ${JSON.stringify(s.activeSpeakers || {})}`,
    s.errors.length ? `    errors: ${s.errors.join(' | ')}` : '    errors: none',
    `    last page log:\n${logs.slice(-12).map((l) => `      ${l}`).join('\n')}`,
  ].join('\n');
}

async function openPage(context, name, room, peer, index, { forceTcp, simulcast, svc, sfuDtlsRole, maxBitrate }) {
  const page = await context.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  const sockets = [];
  page.on('websocket', (w) => sockets.push(w.url()));
  const extra = process.env.E2E_PAGE_PARAMS ? `&${process.env.E2E_PAGE_PARAMS}` : '';
  // Simulcast pages send noise so their encodings cost their maximum bitrates (the bitrate cap
  // check needs a top encoding above the cap).
  const options = `${forceTcp ? '&forceTcp=1' : ''}${simulcast ? '&simulcast=1&testNoise=1' : ''}${svc ? '&svc=1' : ''}` +
    `${sfuDtlsRole ? `&sfuDtlsRole=${sfuDtlsRole}` : ''}${maxBitrate ? `&maxBitrate=${maxBitrate}` : ''}`;
  const url = `${base}/?room=${room}&peer=${peer}&autojoin=1&testSource=${index}${options}${extra}`;
  const opened = Date.now();
  await page.goto(url);
  // bwe: [seconds since opened, availableOutgoingBitrate of the send transport] per collection.
  return { name, page, peer, room, index, logs, sockets, stats: null, opened, bwe: [] };
}

async function collect(p) {
  try {
    p.stats = await p.page.evaluate(() => window.sfuDemo.stats());
    const bwe = p.stats && p.stats.send && p.stats.send.availableOutgoingBitrate;
    if (bwe !== undefined && bwe !== null) p.bwe.push([(Date.now() - p.opened) / 1000, bwe]);
  } catch (e) {
    p.logs.push(`stats failed: ${e.message}`);
  }
  return p.stats;
}

function streams(me, other, kind) {
  return me.stats ? me.stats.remote.filter((r) => r.peerId === other.peer && r.kind === kind) : [];
}

/** What `me` still lacks from `other` (empty: everything arrived and decoded). */
function missing(me, other) {
  if (!me.stats) return ['no stats'];
  const out = [];
  const v = streams(me, other, 'video');
  const a = streams(me, other, 'audio');
  const frames = sum(v, 'framesDecoded');
  if (frames <= MIN_FRAMES) out.push(`${frames} video frames decoded (need > ${MIN_FRAMES})`);
  const seen = v.reduce((n, r) => n + ((r.probe && r.probe.identities[other.index]) || 0), 0);
  if (seen < MIN_IDENTIFIED_FRAMES) {
    out.push(`${seen} probed frames show ${other.name}'s colour ${identityName(other.index)} (need ${MIN_IDENTIFIED_FRAMES})`);
  }
  const counters = Math.max(0, ...v.map((r) => (r.probe ? r.probe.counters : 0)));
  if (counters < MIN_COUNTERS) out.push(`${counters} distinct frame counter values decoded (need ${MIN_COUNTERS})`);
  const packets = sum(a, 'packetsReceived');
  if (packets <= MIN_AUDIO_PACKETS) out.push(`${packets} audio packets (need > ${MIN_AUDIO_PACKETS})`);
  const heard = a.filter((r) => r.probe && r.probe.loud >= MIN_LOUD_READINGS &&
    Math.abs(r.probe.dominantFreq - (300 + 200 * other.index)) <= FREQ_TOLERANCE_HZ);
  if (!heard.length) {
    out.push(`${other.name}'s tone of ${300 + 200 * other.index} Hz not heard (${a.map(probeText).join('; ') || 'no audio stream'})`);
  }
  if (!((me.stats.activeSpeakers || {})[other.peer] > 0)) {
    out.push(`never told that ${other.peer} is the active speaker (told ${JSON.stringify(me.stats.activeSpeakers || {})})`);
  }
  return out;
}

/** Waits until cond() holds for every page (collecting stats every 500 ms) or the deadline. */
async function until(pages, ms, cond) {
  const started = Date.now();
  while (Date.now() - started < ms) {
    await Promise.all(pages.map(collect));
    if (cond()) return true;
    await sleep(500);
  }
  await Promise.all(pages.map(collect));
  return cond();
}

/** The problems with what `me` received, once media flowed: anything it should not have. */
function leaks(me, pages, seconds) {
  const limit = Math.round(UNACCOUNTED_BASE + UNACCOUNTED_PER_SECOND * seconds);
  const problems = [];
  const s = me.stats;
  if (!s) return [`${me.name}: no stats`];
  const byPeer = new Map(pages.map((p) => [p.peer, p]));
  const byIndex = new Map(pages.map((p) => [p.index, p]));
  const who = (n) => (n === me.index ? `its own (${identityName(n)})` : byIndex.has(n)
    ? `${byIndex.get(n).name}'s (${byIndex.get(n).room === me.room ? 'its own room' : 'the other room'}, ${identityName(n)})`
    : identityName(n));
  for (const r of s.remote) {
    const label = byPeer.get(r.peerId);
    if (!label || label.room !== me.room) {
      problems.push(`${me.name} got a ${r.kind} consumer labelled ${r.peerId}, who is not in its room`);
    }
    if (!r.probe) continue;
    if (r.kind === 'video') {
      for (const [n, count] of Object.entries(r.probe.identities)) {
        const i = Number(n);
        if (i !== 0 && (!label || i !== label.index)) {
          problems.push(`${me.name} decoded ${count} frames showing ${who(i)} picture on the video consumer labelled ${r.peerId}`);
        }
      }
    } else if (r.probe.loud >= MIN_LOUD_READINGS && r.probe.dominantFreq !== null) {
      const tone = pages.find((p) => Math.abs(r.probe.dominantFreq - (300 + 200 * p.index)) <= FREQ_TOLERANCE_HZ);
      if (!label || (tone && tone !== label)) {
        problems.push(`${me.name} heard ${tone ? who(tone.index) : `${r.probe.dominantFreq} Hz`} tone on the audio consumer labelled ${r.peerId}`);
      }
    }
  }
  for (const [peer, n] of Object.entries(s.activeSpeakers || {})) {
    const p = byPeer.get(peer);
    if (!p || p.room !== me.room) problems.push(`${me.name} was told ${n} times that ${peer}, not in its room, is the active speaker`);
  }
  // Transport level: only the SSRCs of the consumers asked for, and nothing more on the wire.
  const asked = new Set(s.remote.map((r) => r.ssrc));
  const inbound = s.recvInbound || [];
  for (const i of inbound) {
    if (!asked.has(i.ssrc)) {
      problems.push(`${me.name} has an inbound ${i.kind} RTP stream (ssrc ${i.ssrc}, ${i.packetsReceived} packets) it never asked for`);
    }
  }
  if (inbound.length !== asked.size) {
    problems.push(`${me.name} asked for ${asked.size} streams but its receiving connection has ${inbound.length} inbound-rtp streams`);
  }
  const browserExtra = s.recv && s.recv.packetsReceived !== undefined
    ? s.recv.packetsReceived - sum(inbound, 'packetsReceived') : null;
  const sv = s.recvServer || {};
  const serverExtra = sv.datagramsSent !== undefined
    ? sv.datagramsSent - s.remote.reduce((n, r) => n + ((r.server && r.server.packetsSent) || 0), 0) : null;
  me.unaccounted = { browserExtra, serverExtra };
  if (browserExtra === null) problems.push(`${me.name}: no packetsReceived in the receive transport's stats`);
  else if (browserExtra > limit) {
    problems.push(`${me.name}'s receive transport got ${s.recv.packetsReceived} packets, ${browserExtra} more than its ` +
      `${inbound.length} inbound RTP streams account for (limit ${limit} in ${seconds.toFixed(0)} s)`);
  }
  if (serverExtra === null) problems.push(`${me.name}: no server stats for its receive transport (${JSON.stringify(sv)})`);
  else if (serverExtra > limit) {
    problems.push(`the server sent ${sv.datagramsSent} datagrams on ${me.name}'s receive transport, ${serverExtra} more than ` +
      `its ${s.remote.length} consumers' packets (limit ${limit} in ${seconds.toFixed(0)} s)`);
  }
  return problems;
}

/** The widths of the video encodings `p` is sending now (frames encoded since the last call). */
function liveWidths(p) {
  const now = ((p.stats && p.stats.sendOutbound) || []).filter((o) => o.kind === 'video');
  const prev = p.prevOutbound || [];
  p.prevOutbound = now;
  return now
    .filter((o) => o.frameWidth > 0 && prev.some((q) => q.rid === o.rid && o.framesEncoded > q.framesEncoded))
    .map((o) => o.frameWidth);
}

/**
 * Simulcast: ask every room A page for `layer` and wait for the decoded width to follow. For the
 * lowest layer that is `lowWidth` (LOW_WIDTH unless given); for the top layer, the widest encoding the sender is sending at
 * the time (Chromium turns its 640 px layer off when its bandwidth estimate is short), which must
 * be wider than the lowest.
 */
async function layerCheck(pages, pairs, layer, lowWidth = LOW_WIDTH) {
  await Promise.all(pairs.map(([me]) => me.page.evaluate((l) => window.sfuDemo.setPreferredLayer(l), layer)));
  const before = new Map(pairs.map(([me, other]) => [me, streams(me, other, 'video').map((r) => r.probe || { identities: {} })]));
  const expected = new Map();
  const widthOf = (me, other) => {
    const v = streams(me, other, 'video')[0];
    return v ? { inbound: v.frameWidth, probed: v.probe ? v.probe.width : 0, layer: v.server && v.server.currentLayer } : {};
  };
  const started = Date.now();
  // The widest layer each sender sent at any time during the wait.
  const widestSent = new Map();
  const ok = await until(pages, LAYER_DEADLINE_MS, () => {
    for (const [, other] of pairs) {
      const live = Math.max(0, ...liveWidths(other));
      widestSent.set(other, Math.max(widestSent.get(other) || 0, live));
      expected.set(other, layer === 0 ? lowWidth : live);
    }
    return pairs.every(([me, other]) => {
      const w = widthOf(me, other);
      const v = streams(me, other, 'video')[0];
      const old = (before.get(me)[0] || { identities: {} }).identities[other.index] || 0;
      const want = expected.get(other);
      // The expected width, in inbound-rtp and in the decoded frames, of the right sender's
      // frames decoded since the switch.
      return v && v.probe && want > (layer === 0 ? 0 : lowWidth) && w.inbound === want && w.probed === want &&
        (v.probe.identities[other.index] || 0) > old + 2;
    });
  });
  const took = ((Date.now() - started) / 1000).toFixed(1);
  const lines = pairs.map(([me, other]) => {
    const w = widthOf(me, other);
    return `${me.name} from ${other.name}: inbound-rtp frameWidth ${w.inbound}, decoded ${w.probed} px, server layer ${w.layer}, ` +
      `expected ${expected.get(other)} px (${other.name} sends ${other.stats ? sentText(other.stats) : '?'})`;
  });
  // A sender whose bandwidth estimate kept it to its lowest layer for the whole wait cannot
  // show a switch up: the best layer it offers is the lowest, and that is what must arrive.
  // The others must show the switch: the widest layer their sender sends is what arrives.
  const onlyLowest = layer !== 0 && pairs.every(([me, other]) => {
    const w = widthOf(me, other);
    const want = expected.get(other);
    const lowestOnly = widestSent.get(other) === lowWidth;
    return w.inbound === want && w.probed === want && (want > lowWidth || lowestOnly);
  }) && pairs.some(([, other]) => widestSent.get(other) === lowWidth);
  if (!ok && onlyLowest) {
    console.log(`  asked for layer ${layer}: a sender sent only its lowest layer for ${took} s ` +
      `(its bandwidth estimate), which is what arrived; every other pair got its sender's widest layer ` +
      `(${lines.join('; ')})`);
    return [];
  }
  console.log(`  asked for layer ${layer}: ${ok ? `done in ${took} s` : 'FAILED'} (${lines.join('; ')})`);
  return ok ? [] : [`after asking for simulcast layer ${layer}, the decoded video did not become ` +
    `${layer === 0 ? 'the lowest layer\'s' : 'the widest layer sent\'s (wider than the lowest)'} width ` +
    `within ${LAYER_DEADLINE_MS / 1000} s: ${lines.join('; ')}`];
}

/**
 * Simulcast: every room A page has the server cap its receive transport at BITRATE_CAP; the
 * decoded width of what it receives must fall below the width it had, within
 * BITRATE_CAP_DEADLINE_MS of the call; after the cap is lifted it must come back to the widest
 * encoding its sender sends.
 */
async function bitrateCapCheck(pages, pairs) {
  const widthOf = (me, other) => {
    const v = streams(me, other, 'video')[0];
    return v ? { inbound: v.frameWidth, probed: v.probe ? v.probe.width : 0, layer: v.server && v.server.currentLayer } : {};
  };
  const text = (me, other) => {
    const w = widthOf(me, other);
    return `${me.name} from ${other.name}: inbound-rtp frameWidth ${w.inbound}, decoded ${w.probed} px, server layer ${w.layer}`;
  };
  // Waits until every page decodes its sender's widest encoding (wider than the lowest).
  const full = new Map();
  const reachFull = async (ms) => {
    const started = Date.now();
    const expected = new Map();
    const ok = await until(pages, ms, () => {
      for (const [, other] of pairs) expected.set(other, Math.max(0, ...liveWidths(other)));
      return pairs.every(([me, other]) => {
        const w = widthOf(me, other);
        const want = expected.get(other);
        return want > LOW_WIDTH && w.inbound === want && w.probed === want;
      });
    });
    for (const [me, other] of pairs) full.set(me, expected.get(other));
    const lines = pairs.map(([me, other]) => `${text(me, other)} (sender's widest now ${expected.get(other)} px)`).join('; ');
    return { ok, took: ((Date.now() - started) / 1000).toFixed(1), lines };
  };
  // The estimate may have kept a page below its sender's widest encoding (a loaded machine):
  // the cap is applied once every page gets the full width.
  const before = await reachFull(BITRATE_LIFT_DEADLINE_MS);
  console.log(`  before the cap: ${before.ok ? `full width in ${before.took} s` : 'FAILED'} (${before.lines})`);
  if (!before.ok) {
    return [`before the bitrate cap, the decoded width did not reach the sender's widest within ` +
      `${BITRATE_LIFT_DEADLINE_MS / 1000} s: ${before.lines}`];
  }
  const problems = [];
  const started = Date.now();
  await Promise.all(pairs.map(([me]) => me.page.evaluate((b) => window.sfuDemo.setMaxIncomingBitrate(b), BITRATE_CAP)));
  const lower = await until(pages, BITRATE_CAP_DEADLINE_MS, () => pairs.every(([me, other]) => {
    const w = widthOf(me, other);
    return w.inbound > 0 && w.inbound < full.get(me) && w.probed > 0 && w.probed < full.get(me);
  }));
  const took = ((Date.now() - started) / 1000).toFixed(1);
  const capLines = pairs.map(([me, other]) => `${text(me, other)} (was ${full.get(me)} px)`).join('; ');
  console.log(`  server capped at ${BITRATE_CAP / 1000} kbit/s: ${lower ? `width fell in ${took} s` : 'FAILED'} (${capLines})`);
  if (!lower) {
    problems.push(`with the server's setMaxOutgoingBitrate at ${BITRATE_CAP} bit/s, the decoded width did not fall ` +
      `within ${BITRATE_CAP_DEADLINE_MS / 1000} s: ${capLines}`);
  }
  await Promise.all(pairs.map(([me]) => me.page.evaluate(() => window.sfuDemo.setMaxIncomingBitrate(0))));
  const after = await reachFull(BITRATE_LIFT_DEADLINE_MS);
  console.log(`  cap lifted: ${after.ok ? `full width again in ${after.took} s` : 'FAILED'} (${after.lines})`);
  if (!after.ok) {
    problems.push(`after the bitrate cap was lifted, the decoded width did not come back to the sender's widest ` +
      `within ${BITRATE_LIFT_DEADLINE_MS / 1000} s: ${after.lines}`);
  }
  return problems;
}

/** "1.5s 1.23M" for each estimate sample, one per distinct value in a row. */
function bweText(p) {
  const out = [];
  let last = null;
  for (const [t, b] of p.bwe) {
    if (b === last) continue;
    last = b;
    out.push(`${t.toFixed(1)}s ${(b / 1e6).toFixed(2)}M`);
  }
  return out.join(', ') || 'none';
}

/**
 * What Chromium makes of the server's RTCP: sender reports (remote-outbound-rtp for every
 * inbound stream), receiver reports (remote-inbound-rtp with a round-trip time for every outbound
 * stream), no loss, and transport-wide-cc feedback (the send-side estimate rises above
 * BWE_TARGET within BWE_DEADLINE_MS of the page opening).
 */
async function rtcpCheck(pages) {
  const above = (p) => p.bwe.some(([t, b]) => b > BWE_TARGET && t * 1000 <= BWE_DEADLINE_MS);
  // Sender reports for every inbound stream and a round trip for every outbound one (Chromium
  // sends its audio sender reports about every 5 s, and an RTT needs one echoed back).
  const reported = (p) => {
    const s = p.stats;
    if (!s) return false;
    const rtcp = [...(s.recvRtcp || []), ...(s.sendRtcp || [])];
    return (s.recvInbound || []).every((i) => rtcp.some((x) => x.type === 'remote-outbound-rtp' && x.ssrc === i.ssrc)) &&
      (s.sendOutbound || []).every((o) => rtcp.some((x) => x.type === 'remote-inbound-rtp' && x.ssrc === o.ssrc &&
        typeof x.roundTripTime === 'number'));
  };
  const done = () => pages.every((p) => above(p) && reported(p));
  // Chromium's estimate leaves its start value (600 kbit/s here) through its first probes:
  // bursts whose arrival times the server's feedback reports.
  const rest = Math.max(...pages.map((p) => p.opened + BWE_DEADLINE_MS)) - Date.now();
  if (rest > 0 && !done()) await until(pages, rest, done);
  const problems = [];
  for (const p of pages) {
    const s = p.stats;
    if (!s) continue;
    const recvRtcp = s.recvRtcp || [];
    const sendRtcp = s.sendRtcp || [];
    const srs = [];
    for (const i of s.recvInbound || []) {
      const r = recvRtcp.find((x) => x.type === 'remote-outbound-rtp' && x.ssrc === i.ssrc);
      srs.push(`${i.kind} ${r ? `${r.reportsSent} SRs` : 'no SR'}, lost ${i.packetsLost}/${i.packetsReceived}`);
      if (!r) problems.push(`${p.name}: no remote-outbound-rtp (server sender reports) for its inbound ${i.kind} stream ${i.ssrc}`);
      if (i.packetsLost !== 0) problems.push(`${p.name}: inbound ${i.kind} stream ${i.ssrc} reports packetsLost ${i.packetsLost}`);
    }
    const rrs = [];
    for (const o of s.sendOutbound || []) {
      const r = sendRtcp.find((x) => x.type === 'remote-inbound-rtp' && x.ssrc === o.ssrc);
      const rtt = r && typeof r.roundTripTime === 'number' ? r.roundTripTime : null;
      rrs.push(`${o.kind} ${rtt === null ? 'no RTT' : `RTT ${(rtt * 1000).toFixed(1)} ms (${r.roundTripTimeMeasurements} measurements, ` +
        `lost ${r.packetsLost})`}`);
      if (rtt === null) {
        problems.push(`${p.name}: no remote-inbound-rtp with a roundTripTime (server receiver reports) for its outbound ` +
          `${o.kind} stream ${o.ssrc} (${JSON.stringify(r || null)})`);
      }
    }
    const first = p.bwe.find(([, b]) => b > BWE_TARGET);
    console.log(`  ${p.name} receives: ${srs.join('; ')}`);
    console.log(`  ${p.name} sends: ${rrs.join('; ')}; availableOutgoingBitrate ${first ? `above ${BWE_TARGET / 1e6}M at ${first[0].toFixed(1)} s` : 'never above ' +
      `${BWE_TARGET / 1e6}M`} (${bweText(p)})`);
    if (!above(p)) {
      problems.push(`${p.name}: availableOutgoingBitrate not above ${BWE_TARGET} bit/s within ${BWE_DEADLINE_MS / 1000} s of opening ` +
        `(${bweText(p)}): the server's transport-wide-cc feedback does not drive Chromium's estimate`);
    }
  }
  return problems;
}

/** The lines of a page's chat list, as shown ("peer: text", "peer (you): text"). */
async function chatLines(p) {
  return p.page.$$eval('#chat-log li', (items) => items.map((li) => li.textContent)).catch((e) => [`(unreadable: ${e.message})`]);
}

/**
 * The chat: messages typed on a page reach the other page of its room, once, and no page of
 * the other room. Returns the problems.
 */
async function chatCheck(pages, tag) {
  const problems = [];
  const roomOf = (p) => pages.filter((o) => o.room === p.room);
  const chat = (p) => (p.stats && p.stats.chat) || { producer: null, consumers: [], messages: [] };
  for (const p of pages) {
    for (const c of chat(p).consumers) {
      if (!roomOf(p).some((o) => o !== p && o.peer === c.peerId)) {
        problems.push(`${p.name} receives a data channel ("${c.label}") labelled ${c.peerId}, who is not in its room`);
      }
    }
  }
  const ready = (p) => chat(p).producer === 'open' &&
    roomOf(p).every((o) => o === p || chat(p).consumers.some((c) => c.peerId === o.peer && c.readyState === 'open'));
  const readyStarted = Date.now();
  if (!(await until(pages, CHAT_READY_MS, () => pages.every(ready)))) {
    for (const p of pages.filter((x) => !ready(x))) {
      problems.push(`${p.name}: the chat is not ready within ${CHAT_READY_MS / 1000} s (its channel ${chat(p).producer}, ` +
        `receiving ${JSON.stringify(chat(p).consumers)})`);
    }
    return problems;
  }
  const readyIn = ((Date.now() - readyStarted) / 1000).toFixed(1);
  // The first page of each room, and the second page of the first room (the other direction).
  const rooms = [...new Set(pages.map((p) => p.room))];
  const senders = rooms.map((r) => pages.find((p) => p.room === r));
  const second = pages.filter((p) => p.room === rooms[0])[1];
  if (second) senders.push(second);
  const messages = [];
  for (const from of senders) {
    const text = `hello from ${from.peer} ${tag} ${Math.random().toString(36).slice(2, 10)}`;
    await from.page.fill('#chat-input', text, { timeout: 5_000 });
    await from.page.click('#chat-send', { timeout: 5_000 });
    messages.push({ from, text, sentAt: Date.now(), arrived: new Set() });
  }
  const line = (m) => `${m.from.peer}: ${m.text}`;
  const receivers = (m) => roomOf(m.from).filter((p) => p !== m.from);
  const started = Date.now();
  let lines = new Map();
  const readAll = async () => {
    lines = new Map(await Promise.all(pages.map(async (p) => [p, await chatLines(p)])));
  };
  const arrivedAll = () => messages.every((m) => receivers(m).every((p) => {
    if (lines.get(p).includes(line(m))) m.arrived.add(p);
    return m.arrived.has(p);
  }));
  await readAll();
  while (!arrivedAll() && Date.now() - started < CHAT_DEADLINE_MS) {
    await sleep(100);
    await readAll();
  }
  // Time for a stray copy to reach the other room, then the last look.
  await sleep(CHAT_ABSENCE_MS);
  await readAll();
  await Promise.all(pages.map(collect));
  // From the send to the display, by the pages' clocks (one machine).
  const shownAt = (p, m, mine) => {
    const x = chat(p).messages.find((c) => c.text === m.text && c.mine === mine);
    return x ? x.at : null;
  };
  const latency = (p, m) => {
    const [sent, shown] = [shownAt(m.from, m, true), shownAt(p, m, false)];
    return sent !== null && shown !== null ? `in ${shown - sent} ms` : 'at an unknown time';
  };
  for (const m of messages) {
    if (!lines.get(m.from).includes(`${m.from.peer} (you): ${m.text}`)) {
      problems.push(`${m.from.name} does not show the message typed on it ("${m.text}")`);
    }
    for (const p of pages) {
      const copies = lines.get(p).filter((l) => l.includes(m.text)).length;
      if (p === m.from) continue;
      if (p.room === m.from.room) {
        if (!m.arrived.has(p)) {
          problems.push(`${p.name} did not show "${line(m)}", typed on ${m.from.name}, within ${CHAT_DEADLINE_MS / 1000} s ` +
            `(it shows ${JSON.stringify(lines.get(p).slice(-5))})`);
        } else if (copies !== 1) {
          problems.push(`${p.name} shows "${m.text}" ${copies} times`);
        }
      } else if (copies) {
        problems.push(`${p.name} (the other room) shows "${m.text}", typed on ${m.from.name}`);
      }
    }
  }
  const others = (m) => pages.filter((p) => p.room !== m.from.room).map((p) => p.name);
  console.log(`  chat ready in ${readyIn} s; ` + messages.map((m) => `${m.from.name}'s message reached ` +
    `${receivers(m).map((p) => `${p.name} ${m.arrived.has(p) ? latency(p, m) : 'NEVER'}`).join(', ')}` +
    `${others(m).length ? `, not ${others(m).join(' or ')} (${(CHAT_ABSENCE_MS / 1000).toFixed(0)} s more)` : ''}`).join('; '));
  return problems;
}

/** With the server as DTLS client, Chromium (DTLS server) must have picked AES-CM everywhere. */
function dtlsClientCheck(pages) {
  const problems = [];
  for (const p of pages) {
    const s = p.stats;
    for (const [dir, t] of [['send', s && s.send], ['recv', s && s.recv]]) {
      if (!t) {
        problems.push(`${p.name}: no ${dir} transport stats`);
        continue;
      }
      if (!AES_CM_NAMES.includes(t.srtpCipher)) {
        problems.push(`${p.name} ${dir}: SRTP profile ${t.srtpCipher}, expected AES_CM_128_HMAC_SHA1_80`);
      }
      if (t.dtlsRole !== 'server') problems.push(`${p.name} ${dir}: Chromium is DTLS ${t.dtlsRole}, expected server`);
    }
    const server = s && s.recvServer && s.recvServer.srtpProfile;
    console.log(`  ${p.name}: Chromium SRTP profile send ${s && s.send && s.send.srtpCipher}, recv ${s && s.recv && s.recv.srtpCipher}; ` +
      `server's recv transport ${server}`);
    if (server !== 'AES_CM_128_HMAC_SHA1_80') {
      problems.push(`${p.name}: the server's recv transport reports SRTP profile ${server}, expected AES_CM_128_HMAC_SHA1_80`);
    }
  }
  return problems;
}

async function scenario(browser, mode, options) {
  const { forceTcp } = options;
  const tag = `${mode}-${Date.now().toString(36)}`;
  const roomA = `e2e-${tag}-A`;
  const roomB = `e2e-${tag}-B`;
  const context = await browser.newContext();
  const started = Date.now();
  const a1 = await openPage(context, 'page 1', roomA, 'alice', 1, options);
  const a2 = await openPage(context, 'page 2', roomA, 'bob', 2, options);
  // Room B does not take part in the layer check: there its pages send one encoding (less CPU).
  const optionsB = { ...options, simulcast: false, svc: false };
  const pages = [a1, a2];
  if (!options.singleRoom) {
    pages.push(await openPage(context, 'page 3', roomB, 'carol', 3, optionsB));
    pages.push(await openPage(context, 'page 4', roomB, 'dave', 4, optionsB));
  }
  const pairs = pages.flatMap((me) => pages.filter((o) => o !== me && o.room === me.room).map((o) => [me, o]));
  const passed = await until(pages, DEADLINE_MS, () => pairs.every(([me, other]) => missing(me, other).length === 0));
  const elapsed = ((Date.now() - started) / 1000).toFixed(1);
  const problems = [];
  if (!passed) {
    for (const [me, other] of pairs) {
      const m = missing(me, other);
      if (m.length) problems.push(`within ${DEADLINE_MS / 1000} s, ${me.name} (${me.peer}, room ${me.room === roomA ? 'A' : 'B'}) from ${other.name} (${other.peer}): ${m.join('; ')}`);
    }
  }

  console.log(`\n== ${mode.toUpperCase()}: ${options.singleRoom ? `room ${roomA}` : `rooms ${roomA} / ${roomB}`}, ${elapsed} s`);
  for (const [me, other] of pairs) {
    if (!me.stats) continue;
    const v = streams(me, other, 'video');
    const a = streams(me, other, 'audio');
    console.log(`  ${me.name} (${me.peer}) from ${other.name} (${other.peer}): ${sum(v, 'framesDecoded')} video frames decoded ` +
      `(${sum(v, 'frameWidth') || '?'} px wide, ${sum(v, 'bitrate')} bit/s; ${v.map(probeText).join('; ')}), ` +
      `${sum(a, 'packetsReceived')} audio packets received (${a.map(probeText).join('; ')})`);
  }
  for (const p of pages) {
    if (p.stats) console.log(`  ${p.name} active speaker reports: ${JSON.stringify(p.stats.activeSpeakers || {})}`);
  }

  if (passed && options.simulcast) {
    const roomAPairs = pairs.filter(([me]) => me.room === roomA);
    problems.push(...(await layerCheck(pages, roomAPairs, 0)));
    if (!problems.length) problems.push(...(await layerCheck(pages, roomAPairs, 2)));
    if (!problems.length) problems.push(...(await bitrateCapCheck(pages, roomAPairs)));
  }
  if (passed && options.svc) {
    // VP9 L3T3_KEY: spatial layer 0 is the lowest width Chromium sends; then back to the top.
    const roomAPairs = pairs.filter(([me]) => me.room === roomA);
    problems.push(...(await layerCheck(pages, roomAPairs, 0, SVC_LOW_WIDTH)));
    if (!problems.length) problems.push(...(await layerCheck(pages, roomAPairs, 2, SVC_LOW_WIDTH)));
  }
  if (passed && options.maxBitrate) problems.push(...(await rtcpCheck(pages)));
  await Promise.all(pages.map(collect));
  if (options.sfuDtlsRole === 'client') problems.push(...dtlsClientCheck(pages));
  if (options.https) {
    for (const p of pages) {
      const protocol = await p.page.evaluate(() => location.protocol).catch((e) => `${e}`);
      if (protocol !== 'https:') problems.push(`${p.name} was not loaded over HTTPS (${protocol})`);
      if (!p.sockets.length || !p.sockets.every((u) => u.startsWith('wss://'))) {
        problems.push(`${p.name} signaled over ${JSON.stringify(p.sockets)}, not WSS`);
      }
    }
    console.log(`  pages over HTTPS, signaling over ${[...new Set(pages.flatMap((p) => p.sockets.map((u) => u.split('/ws')[0])))].join(', ')}`);
  }

  for (const p of pages) {
    problems.push(...leaks(p, pages, (Date.now() - started) / 1000));
    if (!p.stats || !p.stats.joined || p.stats.errors.length) problems.push(`${p.name} did not join cleanly`);
    const t = p.stats && p.stats.recv;
    if (passed && forceTcp && t && t.remoteProtocol !== 'tcp') {
      problems.push(`${p.name}: forceTcp, but the selected candidate pair uses ${t.remoteProtocol}`);
    }
  }
  // Both rooms in one Sfu (the same worker), each with its own router.
  const placements = pages.map((p) => p.stats && p.stats.placement);
  if (placements.every(Boolean)) {
    const workers = new Set(placements.map((x) => x.worker));
    const routers = (room) => new Set(pages.filter((p) => p.room === room).map((p) => p.stats.placement.router));
    if (workers.size !== 1) problems.push(`the rooms are on different workers (${[...workers].join(', ')}), so isolation is not tested within one Sfu`);
    if (options.singleRoom) {
      if (routers(roomA).size !== 1) problems.push(`one room, several routers: ${JSON.stringify(placements)}`);
    } else {
      if (routers(roomA).size !== 1 || routers(roomB).size !== 1 || [...routers(roomA)][0] === [...routers(roomB)][0]) {
        problems.push(`rooms and routers do not match: ${JSON.stringify(placements)}`);
      }
      console.log(`  both rooms on worker ${[...workers].join(', ')}: room A router ${[...routers(roomA)]}, room B router ${[...routers(roomB)]}`);
    }
  } else {
    problems.push('a page does not know where its room lives (no join reply?)');
  }
  console.log(`  receive transports, RTP packets beyond the consumers' streams (browser / server): ` +
    pages.map((p) => `${p.name} ${p.unaccounted ? `${p.unaccounted.browserExtra} / ${p.unaccounted.serverExtra}` : '?'}`).join(', '));
  // The chat, after the media checks (its packets are not in the counts above).
  const errorsBefore = new Map(pages.map((p) => [p, p.stats ? p.stats.errors.length : 0]));
  problems.push(...(await chatCheck(pages, tag)));
  for (const p of pages) {
    const added = p.stats ? p.stats.errors.slice(errorsBefore.get(p)) : [];
    if (added.length) problems.push(`${p.name}, during the chat: ${added.join(' | ')}`);
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
    for (const p of pages) console.log(describe(p));
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

// The ffmpeg run: one page joins a room of its own; the test POSTs /rooms/ROOM/ffmpeg, runs the ffmpeg command line the server answers
// (a 640x360 VP8 test pattern and an Opus tone into comedia plain transports) and, within
// FFMPEG_DEADLINE_MS, the page must consume the publisher's streams like any peer's: its video
// decoded (> MIN_FRAMES frames, 640 px wide) and its audio received (> MIN_AUDIO_PACKETS
// packets) and heard (its 440 Hz tone, by the page's analyser). Then DELETE /rooms/ROOM/ffmpeg/PEER must close the publisher: the page loses its
// streams, and a second DELETE is a 404.
const FFMPEG_DEADLINE_MS = Number(process.env.E2E_FFMPEG_DEADLINE_MS || 15_000);

const FFMPEG_TONE_HZ = 440;

/** Whether the page's analyser heard ffmpeg's tone on audio stream `a`. */
function heardTone(a) {
  return Boolean(a.probe) && a.probe.loud >= MIN_LOUD_READINGS &&
    Math.abs(a.probe.dominantFreq - FFMPEG_TONE_HZ) <= FREQ_TOLERANCE_HZ;
}

async function ffmpegScenario(browser) {
  console.log('\n== scenario ffmpeg');
  const context = await browser.newContext();
  const room = `ffmpeg-${Math.random().toString(36).slice(2, 8)}`;
  const p = await openPage(context, 'viewer', room, 'viewer', 1, {});
  const problems = [];
  let ffmpeg = null;
  let ffmpegLog = '';
  try {
    const until = Date.now() + 10_000;
    while (!(await p.page.evaluate(() => window.sfuDemo.state.joined).catch(() => false))) {
      if (Date.now() > until) throw new Error('the page did not join');
      await sleep(200);
    }
    const answer = await fetch(`${base}/rooms/${room}/ffmpeg`, { method: 'POST' });
    const command = (await answer.text()).trim();
    if (answer.status !== 200) throw new Error(`POST /rooms/${room}/ffmpeg: ${answer.status} ${command}`);
    const publisher = answer.headers.get('x-peer-id');
    console.log(`  publisher ${publisher}: ${command.replace(/\\\n/g, '')}`);
    ffmpeg = spawn('sh', ['-c', `exec ${command.replace(/^ffmpeg /, 'ffmpeg -loglevel error -nostdin ')}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    ffmpeg.stderr.on('data', (d) => { ffmpegLog += d; });
    const deadline = Date.now() + FFMPEG_DEADLINE_MS;
    let video = [];
    let audio = [];
    for (;;) {
      await collect(p);
      const remote = p.stats ? p.stats.remote.filter((r) => r.peerId === publisher) : [];
      video = remote.filter((r) => r.kind === 'video');
      audio = remote.filter((r) => r.kind === 'audio');
      const ok = video.some((v) => v.framesDecoded > MIN_FRAMES && v.frameWidth === 640) &&
        audio.some((a) => a.packetsReceived > MIN_AUDIO_PACKETS && heardTone(a));
      if (ok) break;
      if (Date.now() > deadline || ffmpeg.exitCode !== null) {
        problems.push(`from ffmpeg: video ${JSON.stringify(video.map((v) => [v.framesDecoded, v.frameWidth]))}, ` +
          `audio ${JSON.stringify(audio.map((a) => [a.packetsReceived, probeText(a)]))} (want > ${MIN_FRAMES} frames 640 px wide, ` +
          `> ${MIN_AUDIO_PACKETS} audio packets and its ${FFMPEG_TONE_HZ} Hz tone heard)${ffmpeg.exitCode !== null ? `; ffmpeg exited ${ffmpeg.exitCode}` : ''}`);
        break;
      }
      await sleep(500);
    }
    if (problems.length === 0) {
      console.log(`  page decoded ${video[0].framesDecoded} frames ${video[0].frameWidth}x${video[0].frameHeight} and ` +
        `received ${audio[0].packetsReceived} audio packets (${probeText(audio[0])}) from ${publisher}`);
      const closed = await fetch(`${base}/rooms/${room}/ffmpeg/${publisher}`, { method: 'DELETE' });
      if (closed.status !== 200) problems.push(`DELETE the publisher: ${closed.status} ${await closed.text()}`);
      const gone = Date.now() + 5_000;
      for (;;) {
        await collect(p);
        const left = p.stats ? p.stats.remote.filter((r) => r.peerId === publisher).length : -1;
        if (left === 0) break;
        if (Date.now() > gone) {
          problems.push(`after DELETE the page still has ${left} streams of ${publisher}`);
          break;
        }
        await sleep(200);
      }
      const again = await fetch(`${base}/rooms/${room}/ffmpeg/${publisher}`, { method: 'DELETE' });
      if (again.status !== 404) problems.push(`a second DELETE answered ${again.status}, not 404`);
    }
  } catch (e) {
    problems.push(e.message);
  } finally {
    if (ffmpeg && ffmpeg.exitCode === null) ffmpeg.kill('SIGINT');
  }
  if (problems.length) {
    console.log(`  FAIL:\n    ${problems.join('\n    ')}`);
    console.log(describe(p));
    if (ffmpegLog) console.log(`  ffmpeg said: ${ffmpegLog.slice(-2000)}`);
  } else {
    console.log('  ok');
  }
  await p.page.evaluate(() => window.sfuDemo.leave()).catch(() => {});
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
    // The HTTPS run's server has a self-signed certificate.
    ignoreHTTPSErrors: true,
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
  // E2E_SCENARIOS=udp,simulcast runs only those.
  const only = (process.env.E2E_SCENARIOS || 'udp,tcp,simulcast,svc,dtls-client,ffmpeg').split(',');
  const results = [];
  // UDP, with a video limit that lets the send-side estimate show above 1 Mbit/s (RTCP checks).
  if (only.includes('udp')) results.push(await scenario(browser, 'udp', { forceTcp: false, maxBitrate: RTCP_RUN_MAX_BITRATE }));
  if (only.includes('tcp')) results.push(await scenario(browser, 'tcp', { forceTcp: true }));
  // The camera in three simulcast encodings (rid-based), over UDP.
  if (only.includes('simulcast')) results.push(await scenario(browser, 'simulcast', { forceTcp: false, simulcast: true }));
  // Room A's cameras in VP9 with three spatial and three temporal layers (L3T3_KEY).
  if (only.includes('svc')) results.push(await scenario(browser, 'svc', { forceTcp: false, svc: true }));
  // One room of two pages, the server's transports as DTLS client (Chromium picks AES-CM).
  if (only.includes('dtls-client')) {
    results.push(await scenario(browser, 'dtls-client', { forceTcp: false, singleRoom: true, sfuDtlsRole: 'client' }));
  }
  // One room of two pages loaded over HTTPS (the server must be the HTTPS one).
  if (only.includes('https')) results.push(await scenario(browser, 'https', { forceTcp: false, singleRoom: true, https: true }));
  // ffmpeg publishing into a room through the server's plain transports.
  if (only.includes('ffmpeg')) results.push(await ffmpegScenario(browser));
  allOk = results.length > 0 && results.every(Boolean);
} catch (e) {
  console.error(`e2e: ${e.stack || e}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
console.log(allOk ? '\ne2e: PASS' : '\ne2e: FAIL');
process.exit(allOk ? 0 : 1);
