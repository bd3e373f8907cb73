//! The report: a table for people, JSON for programs, a PNG chart of the sweeps.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::{Measurement, Point, Report};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn measurement_rows(out: &mut String, m: &Measurement) {
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<44} {v}");
    };
    row(
        "offered load (publisher RTP pkt/s)",
        format!("{:.0}", m.offered_pps),
    );
    row(
        "forwarded RTP pkt/s (received by consumers)",
        format!(
            "{:.0}  ({} in {:.1} s, {} rtx)",
            m.forwarded_pps, m.forwarded, m.wall_s, m.rtx
        ),
    );
    row(
        "SFU worker CPU (user/sys) / utilisation",
        format!(
            "{:.3} s ({:.2}/{:.2}) / {:.0}%",
            m.sfu_cpu_s,
            m.sfu_user_s,
            m.sfu_system_s,
            m.sfu_util * 100.0
        ),
    );
    row(
        "** packets per SFU CPU-second",
        format!(
            "{:.0}  ({:.2} µs/pkt)",
            m.pkts_per_sfu_cpu_s, m.sfu_us_per_pkt
        ),
    );
    row(
        "generator CPU / utilisation",
        format!(
            "{:.3} s / {:.0}%  ({:.2} µs/pkt); process {:.3} s",
            m.gen_cpu_s,
            m.gen_util * 100.0,
            m.gen_us_per_pkt,
            m.process_cpu_s
        ),
    );
    row(
        "added delay p50 / p99 / max (kernel rx stamp)",
        format!(
            "{} / {} / {} µs  ({} samples, {} unmatched{})",
            m.delay_p50_us,
            m.delay_p99_us,
            m.delay_max_us,
            m.delay_samples,
            m.delay_unmatched,
            if m.count_only > 0 {
                format!("; {} packets to count-only viewers", m.count_only)
            } else {
                String::new()
            }
        ),
    );
    row(
        "delay at generator read p50 / p99",
        format!(
            "{} / {} µs  (adds the generator's scheduling)",
            m.app_delay_p50_us, m.app_delay_p99_us
        ),
    );
    row(
        "loss (whole run, after drain)",
        format!(
            "{} of {} ({:.4}%), silent consumers {}",
            m.lost,
            m.expected,
            m.loss_ratio * 100.0,
            m.silent_consumers
        ),
    );
    row(
        "kernel rcvbuf drops / SFU send errors",
        format!("{} / {}", m.kernel_rcvbuf_drops, m.sfu_send_errors),
    );
    row(
        "SFU datagrams sent / received / GSO calls",
        format!(
            "{} / {} / {}",
            m.sfu_datagrams_sent, m.sfu_datagrams_received, m.sfu_gso_batches
        ),
    );
    if let (Some(util), Some(marginal)) = (m.quiet_sfu_util, m.marginal_us_per_pkt) {
        row(
            "SFU utilisation without media / marginal",
            format!(
                "{:.1}% (same transports, media stopped) / {marginal:.2} µs per forwarded packet",
                util * 100.0
            ),
        );
    }
    row(
        "SFU deadlines served",
        format!(
            "{} ({:.0}/s)",
            m.sfu_deadlines_served,
            m.sfu_deadlines_served as f64 / m.wall_s.max(1e-9)
        ),
    );
    row(
        "preempted by other processes: SFU / generator",
        format!(
            "{} / {} times; SFU timer wake late by {} µs mean",
            m.sfu_preempted, m.gen_preempted, m.sfu_timer_late_mean_us
        ),
    );
    row("verdict", m.verdict.clone());
    for w in &m.per_worker {
        row(
            &format!("worker {} ({} viewers)", w.worker, w.viewers),
            format!(
                "CPU {:.3} s ({:.0}%); {} pkt to its viewers: {:.0} per CPU-second ({:.2} \
                 µs/pkt); delay p50 / p99 {} / {} µs; lost {} of {}",
                w.cpu_s,
                w.util * 100.0,
                w.forwarded,
                w.pkts_per_cpu_s,
                w.us_per_pkt,
                w.delay_p50_us,
                w.delay_p99_us,
                w.lost,
                w.expected
            ),
        );
    }
}

/// The pipe workload's comparison (the two-worker run is the main measurement above it).
fn pipe_rows(out: &mut String, p: &super::PipeComparison) {
    let _ = writeln!(out, "the same {} viewers on one worker:", p.viewers);
    measurement_rows(out, &p.one_worker);
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<44} {v}");
    };
    row(
        "pipe: packets carried in the window",
        p.pipe_packets.to_string(),
    );
    row(
        "SFU µs per delivered packet: 1 / 2 workers",
        format!(
            "{:.2} / {:.2}  (spreading over a pipe costs {:+.1}%)",
            p.one_us_per_pkt,
            p.two_us_per_pkt,
            p.pipe_overhead * 100.0
        ),
    );
    row(
        "** derived: viewers per full core, 1 / 2",
        format!(
            "{:.0} / {:.0}  = {:.2}x (each worker on its own core at its measured CPU per \
             viewer; not measured)",
            p.derived_one_core_viewers, p.derived_two_core_viewers, p.derived_ratio
        ),
    );
    for c in &p.capacity {
        row(
            &format!(
                "capacity search: {} worker(s), {} core(s)",
                c.workers, c.sfu_cores
            ),
            format!(
                "{} viewers (stopped by {}); steps (viewers, loss%, p99 µs, sfu%, gen%, gen \
                 µs/pkt): {}",
                c.viewers,
                c.stopped_by,
                c.steps
                    .iter()
                    .map(|(v, l, d, s, g, gp)| format!(
                        "({v}, {:.3}, {d}, {:.0}, {:.0}, {gp:.2})",
                        l * 100.0,
                        s * 100.0,
                        g * 100.0
                    ))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        );
    }
}

/// The report as a table.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== sfu loadgen: {}", r.description);
    let _ = writeln!(
        out,
        "machine: {} CPUs ({}), load average {} -> {}, pinned (sfu, generator) {:?}, \
         busy before start (other processes) {}",
        r.machine.cpus,
        r.machine.cpu_model,
        r.machine.loadavg_start,
        r.machine.loadavg_end,
        r.machine.pinned,
        r.machine
            .busy_before
            .iter()
            .map(|(c, b)| format!("cpu{c} {:.0}%", b * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    measurement_rows(&mut out, &r.run);
    if let Some(p) = &r.pipe {
        pipe_rows(&mut out, p);
    }
    let j = &r.joins;
    let _ = writeln!(
        out,
        "  {:<44} {:.1} / {:.1} ms  (ICE+DTLS {:.1} / {:.1}; video {:.1} / {:.1}; {} joins)",
        "join: created -> first audio p50 / p99",
        j.first_audio_p50_ms,
        j.first_audio_p99_ms,
        j.connected_p50_ms,
        j.connected_p99_ms,
        j.first_video_p50_ms,
        j.first_video_p99_ms,
        j.samples
    );
    for (name, c) in std::iter::once(("transport setup (create+ICE+DTLS)", &r.creation))
        .chain(r.idle_creation.iter().map(|c| ("idle transports setup", c)))
    {
        let _ = writeln!(
            out,
            "  {:<44} {} transports: {:.0} per SFU CPU-second ({:.0} µs each; create call \
             {:.0} µs); {:.0}/s wall; client side {:.0} µs each; RSS {} B each created \
             (server only), {} B connected (server+client)",
            name,
            c.transports,
            c.per_sfu_cpu_s,
            c.sfu_setup_us,
            c.sfu_create_us,
            c.per_wall_s,
            c.gen_setup_us,
            c.rss_per_created_transport,
            c.rss_per_connected_transport
        );
    }
    for d in &r.data {
        let _ = writeln!(
            out,
            "  {:<44} {} consumers: {:.0} messages relayed per SFU CPU-second ({:.1} µs each; \
             {} sent, {} refused, {} relayed; SFU {:.0}% busy)",
            format!(
                "data relay ({} B x {}/s)",
                super::DATA_SIZE,
                super::DATA_RATE
            ),
            d.consumers,
            d.per_sfu_cpu_s,
            d.sfu_us_per_message,
            d.sent,
            d.refused,
            d.relayed,
            d.sfu_util * 100.0
        );
    }
    if let Some(c) = &r.churn {
        let _ = writeln!(
            out,
            "  {:<44} {} joins in {:.1} s, {:.0} SFU µs each; RSS {} -> {} (after {}) -> {} MB, \
             {:.0} B per join after the first tenth (the generator keeps {} B of each); Sfu tables (transports, producers, \
             consumers, paths, ufrags, timers, timer entries) {:?} -> {:?}",
            "churn (join: 2 transports, produce, consume)",
            c.joins,
            c.wall_s,
            c.sfu_us_per_join,
            c.rss_start >> 20,
            c.rss_warm >> 20,
            (c.joins / 10).max(1),
            c.rss_end >> 20,
            c.rss_per_join_after_warm,
            c.generator_per_join,
            c.footprint_start,
            c.footprint_end
        );
    }
    let _ = writeln!(
        out,
        "  {:<44} {} B ({} consumers; includes their transports, client state, RTX caches)",
        "RSS per consumer", r.rss_per_consumer, r.consumers
    );
    let sec = r.security.as_ref();
    let _ = writeln!(
        out,
        "  {:<44} {} / {} / {}",
        "SRTP profile / DTLS version / cipher suite",
        sec.and_then(|s| s.srtp_profile.clone())
            .unwrap_or_else(|| "not seen".into()),
        sec.and_then(|s| s.dtls_version.clone())
            .unwrap_or_else(|| "not seen".into()),
        sec.and_then(|s| s.cipher_suite.clone())
            .unwrap_or_else(|| "not seen".into()),
    );
    let t = &r.totals;
    let _ = writeln!(
        out,
        "  {:<44} {} verified, {} corrupt; length match agreed {} / disagreed {} / not yet \
         learned {}; relearned {}; generator send errors {}",
        "probe receivers (decrypted)",
        t.probe_verified,
        t.probe_corrupt,
        t.probe_match_agreed,
        t.probe_match_disagreed,
        t.probe_match_unknown,
        t.relearned,
        t.send_errors
    );
    if let Some(s) = &r.sweep {
        for (name, points) in [
            ("participants per room", &s.participants),
            ("idle transports (beside 1 room x 10)", &s.idle),
        ] {
            let _ = writeln!(out, "sweep: {name}");
            let _ = writeln!(
                out,
                "  {:>6} {:>10} {:>12} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8}",
                "x",
                "fwd pkt/s",
                "pkt/SFU-cpu-s",
                "µs/pkt",
                "marginal",
                "p50 µs",
                "p99 µs",
                "sfu%",
                "gen%",
                "loss%"
            );
            for p in points.iter() {
                let m = &p.m;
                let _ = writeln!(
                    out,
                    "  {:>6} {:>10.0} {:>12.0} {:>8.2} {:>8} {:>8} {:>8} {:>7.0} {:>7.0} {:>8.4}",
                    p.x,
                    m.forwarded_pps,
                    m.pkts_per_sfu_cpu_s,
                    m.sfu_us_per_pkt,
                    m.marginal_us_per_pkt
                        .map_or("-".to_string(), |v| format!("{v:.2}")),
                    m.delay_p50_us,
                    m.delay_p99_us,
                    m.sfu_util * 100.0,
                    m.gen_util * 100.0,
                    m.loss_ratio * 100.0
                );
            }
        }
    }
    out
}

/// Writes the report as JSON.
pub fn write_json(r: &Report, path: &Path) -> Result<(), Error> {
    std::fs::write(path, serde_json::to_string_pretty(r)?)?;
    Ok(())
}

fn register_font() -> bool {
    use std::sync::OnceLock;
    static DONE: OnceLock<bool> = OnceLock::new();
    *DONE.get_or_init(|| {
        let candidates = [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        ];
        for c in candidates {
            if let Ok(bytes) = std::fs::read(c) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// One chart panel: points, x label, y label, the value drawn, log x axis.
type Panel<'a> = (
    &'a [Point],
    &'a str,
    &'a str,
    &'a dyn Fn(&Point) -> f64,
    bool,
);

/// Draws the sweeps: packets per SFU CPU-second and p99 delay against participants per room
/// and against idle transports.
pub fn write_chart(r: &Report, path: &Path) -> Result<(), Error> {
    if !register_font() {
        return Err(
            "no TrueType font found for the chart's labels (looked for DejaVu Sans)".into(),
        );
    }
    let Some(s) = &r.sweep else {
        return Err("the chart needs --sweep".into());
    };
    let root = BitMapBackend::new(path, (1400, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "sfu, one mio worker: cost per forwarded packet (load avg {} → {}, {})",
        r.machine.loadavg_start,
        r.machine.loadavg_end,
        match r.machine.pinned {
            Some((s, g)) => format!("SFU on cpu{s}, generator on cpu{g}"),
            None => "not pinned".into(),
        }
    );
    let root = root.titled(&title, ("sans-serif", 22))?;
    let panels = root.split_evenly((2, 2));
    let per_cpu = |p: &Point| p.m.pkts_per_sfu_cpu_s / 1000.0;
    let p99 = |p: &Point| f64::from(p.m.delay_p99_us) / 1000.0;
    // Forwarding's own cost: the same transports' cost without media taken out.
    let marginal = |p: &Point| p.m.marginal_us_per_pkt.unwrap_or(p.m.sfu_us_per_pkt);
    let specs: [Panel<'_>; 4] = [
        (
            &s.participants,
            "participants per room (1 room)",
            "k forwarded pkts per SFU CPU-second",
            &per_cpu,
            false,
        ),
        (
            &s.participants,
            "participants per room (1 room)",
            "added delay p99 (ms)",
            &p99,
            false,
        ),
        (
            &s.idle,
            "idle transports beside 1 room x 10 (log)",
            "marginal µs of SFU CPU per forwarded packet",
            &marginal,
            true,
        ),
        (
            &s.idle,
            "idle transports beside 1 room x 10 (log)",
            "added delay p99 (ms)",
            &p99,
            true,
        ),
    ];
    for (area, (points, xdesc, ydesc, f, log)) in panels.iter().zip(specs) {
        if points.is_empty() {
            continue;
        }
        let data: Vec<(f64, f64)> = points.iter().map(|p| (p.x as f64, f(p))).collect();
        let xmax = data.iter().map(|d| d.0).fold(1.0, f64::max) * 1.1;
        let xmin = data.iter().map(|d| d.0).fold(f64::MAX, f64::min);
        let ymax = data.iter().map(|d| d.1).fold(0.0, f64::max) * 1.25 + 1e-3;
        let mut b = ChartBuilder::on(area);
        b.margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .caption(format!("{ydesc} vs {xdesc}"), ("sans-serif", 16));
        if log {
            let mut chart =
                b.build_cartesian_2d((xmin.max(1.0) * 0.8..xmax).log_scale(), 0.0..ymax)?;
            chart.configure_mesh().x_desc(xdesc).y_desc(ydesc).draw()?;
            chart.draw_series(LineSeries::new(data.clone(), BLUE.stroke_width(2)))?;
            chart.draw_series(
                data.iter()
                    .map(|&(x, y)| Circle::new((x, y), 4, BLUE.filled())),
            )?;
        } else {
            let mut chart = b.build_cartesian_2d(0.0..xmax, 0.0..ymax)?;
            chart.configure_mesh().x_desc(xdesc).y_desc(ydesc).draw()?;
            chart.draw_series(LineSeries::new(data.clone(), BLUE.stroke_width(2)))?;
            chart.draw_series(
                data.iter()
                    .map(|&(x, y)| Circle::new((x, y), 4, BLUE.filled())),
            )?;
        }
    }
    root.present()?;
    Ok(())
}
