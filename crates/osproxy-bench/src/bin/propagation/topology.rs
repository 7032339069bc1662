//! Fleet topology: the same store fleet on the etcd member
//! directly, through one `etcd grpc-proxy`, and through two (stores split
//! evenly), each beside a bare-watch fleet of the same size on the same
//! endpoints. Per topology and fleet size, on a fresh single-member etcd:
//!
//! - etcd server resident memory before and after the stores connect (the
//!   bare fleet starts only after that reading), per added store;
//! - CPU per publish of the server and of the proxies;
//! - "every store has it" and "every bare watch has it", from the put being
//!   sent (the acknowledgement itself queues behind the fan-out);
//! - reconnects of the stores during the run (a proxy must cause none).

use std::time::Duration;

use osproxy_etcd::EtcdDirectiveStore;
use osproxy_test_support::{unique_key, EtcdCluster, EtcdProxy};
use serde::Serialize;
use tokio::runtime::Runtime;

use crate::fleet::{connect_stores, BareFleet, StoreOpts, Writer};
use crate::stats::Summary;
use crate::sys::{mono, pid_cpu, process_cpu, signed_delta, status_kib};
use crate::workload::Values;
use crate::Res;

/// What one topology phase runs.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Fleet sizes.
    pub store_counts: Vec<usize>,
    /// Proxy counts; 0 is direct.
    pub proxies: Vec<usize>,
    /// Measured writes per (topology, size), each to the store key and to
    /// the bare key.
    pub writes: usize,
    /// Longest wait for one write to reach everyone.
    pub cap: Duration,
}

/// One topology at one fleet size.
#[derive(Clone, Debug, Serialize)]
pub struct TopologyRun {
    /// The etcd release of the member and the proxies (`3.7.2`).
    pub etcd: String,
    pub topology: String,
    pub proxies: usize,
    pub stores: usize,
    pub server_rss_before_kib: u64,
    pub server_rss_with_stores_kib: u64,
    pub server_rss_per_store_kib: f64,
    /// The server's live Go heap after a forced collection, before the
    /// stores connect and with them connected (KiB): what it keeps per
    /// watcher, free of the collector's timing (RSS is only context).
    pub server_heap_before_kib: Option<f64>,
    pub server_heap_with_stores_kib: Option<f64>,
    pub server_cpu_per_publish_ms: f64,
    /// Sum over the proxies, after the stores connected.
    pub proxy_rss_kib: u64,
    pub proxy_cpu_per_publish_ms: f64,
    /// Every store has it, from the put being sent (ms).
    pub store_every_sent: Summary,
    /// Every bare watch has it, from the put being sent (ms).
    pub bare_every_sent: Summary,
    /// Sum of the stores' reconnects over the run.
    pub reconnects: u64,
    /// Watchers the etcd server holds once the stores are connected (its
    /// `etcd_debugging_mvcc_watcher_total`): the per-store state it keeps.
    pub server_watchers: Option<u64>,
    /// Watch streams the server holds (`etcd_debugging_mvcc_watch_stream_total`).
    pub server_watch_streams: Option<u64>,
    /// This process's CPU per store-key write until every store had it
    /// (decode and swap in every store), ms.
    pub harness_cpu_per_store_write_ms: f64,
    /// The same per bare-key write (the bare watches only receive), ms.
    pub harness_cpu_per_bare_write_ms: f64,
}

/// The name of a topology with `proxies` proxies.
pub fn name(proxies: usize) -> String {
    match proxies {
        0 => "direct".to_owned(),
        1 => "1 proxy".to_owned(),
        k => format!("{k} proxies"),
    }
}

fn rss(pid: Option<u32>) -> u64 {
    pid.and_then(|p| status_kib(&p.to_string(), "VmRSS"))
        .unwrap_or(0)
}

/// The lowest of five resident-memory readings over a second: the Go
/// runtime's heap moves with its collections, and the minimum is the
/// steadiest figure of what the process keeps.
fn settled_rss(pid: u32) -> u64 {
    let mut lowest = u64::MAX;
    for i in 0..5 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(250));
        }
        lowest = lowest.min(rss(Some(pid)));
    }
    if lowest == u64::MAX {
        0
    } else {
        lowest
    }
}

/// A plain HTTP/1.1 GET on loopback (etcd's metrics), bounded.
fn http_get(url: &str) -> Option<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/"), |(h, p)| (h, p));
    let addr: std::net::SocketAddr = host.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// A gauge's value from Prometheus text.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// The lowest of three live-heap readings (each after a forced collection),
/// KiB: a reading may catch a request's transient allocations.
fn heap_kib(member: &osproxy_test_support::EtcdMember) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    (0..3)
        .filter_map(|_| member.go_heap_after_gc())
        .min()
        .map(|b| b as f64 / 1024.0)
}

fn cpu_of(pids: &[u32]) -> Duration {
    pids.iter().map(|&p| pid_cpu(p)).sum()
}

/// Runs every (topology, size) of `s`.
pub fn run(rt: &Runtime, values: &Values, s: &Settings) -> Res<Vec<TopologyRun>> {
    let mut out = Vec::new();
    for &k in &s.proxies {
        for &n in &s.store_counts {
            eprintln!("topology: {} × {n} stores", name(k));
            out.push(one(rt, values, k, n, s, None)?);
        }
    }
    Ok(out)
}

/// One topology at one fleet size, on a fresh member of the etcd in
/// `bin_dir` (`None`: the default etcd), with proxies of the same etcd.
pub fn one(
    rt: &Runtime,
    values: &Values,
    k: usize,
    n: usize,
    s: &Settings,
    bin_dir: Option<&std::path::Path>,
) -> Res<TopologyRun> {
    let mut builder = EtcdCluster::builder().pprof();
    if let Some(dir) = bin_dir {
        builder = builder.etcd_bin_dir(dir);
    }
    let cluster = builder.launch();
    let member = cluster.member(0);
    let server_pid = member.pid().ok_or("etcd is not running")?;
    let proxies: Vec<EtcdProxy> = (0..k).map(|_| EtcdProxy::start(&cluster)).collect();
    let proxy_pids: Vec<u32> = proxies.iter().filter_map(EtcdProxy::pid).collect();
    let endpoints: Vec<String> = if k == 0 {
        vec![member.endpoint()]
    } else {
        proxies.iter().map(EtcdProxy::endpoint).collect()
    };
    let mut writer = Writer::connect(&[member.endpoint()])?;
    let store_key = unique_key("bench-topo-store");
    let bare_key = unique_key("bench-topo-bare");
    writer.put(&store_key, values.value(0))?;
    writer.put(&bare_key, values.value(0))?;
    std::thread::sleep(Duration::from_secs(1));
    let server_rss_before = settled_rss(server_pid);
    let server_heap_before = heap_kib(member);

    // The stores, split evenly over the endpoints.
    let mut stores: Vec<EtcdDirectiveStore> = Vec::with_capacity(n);
    for (j, endpoint) in endpoints.iter().enumerate() {
        let share = n / endpoints.len() + usize::from(j < n % endpoints.len());
        if share > 0 {
            stores.extend(connect_stores(
                rt,
                std::slice::from_ref(endpoint),
                &store_key,
                share,
                StoreOpts::DEFAULT,
            )?);
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let server_rss_with = settled_rss(server_pid);
    let server_heap_with = heap_kib(member);
    let metrics = http_get(&format!("{}/metrics", member.metrics_url())).unwrap_or_default();
    let server_watchers = metric(&metrics, "etcd_debugging_mvcc_watcher_total");
    let server_watch_streams = metric(&metrics, "etcd_debugging_mvcc_watch_stream_total");
    let proxy_rss: u64 = proxy_pids.iter().map(|&p| rss(Some(p))).sum();

    // The bare watches of the same topology, after the memory reading.
    let mut bare = Vec::new();
    for (j, endpoint) in endpoints.iter().enumerate() {
        let share = n / endpoints.len() + usize::from(j < n % endpoints.len());
        if share > 0 {
            bare.push(BareFleet::start(rt, endpoint, &bare_key, share)?);
        }
    }
    std::thread::sleep(Duration::from_millis(500));

    let reconnects0: u64 = stores.iter().map(|st| st.status().reconnects).sum();
    let mut store_every = Vec::new();
    let mut store_missed = 0;
    let mut bare_every = Vec::new();
    let mut bare_missed = 0;
    let mut server_cpu = Duration::ZERO;
    let mut proxy_cpu = Duration::ZERO;
    let mut own_store_cpu = Duration::ZERO;
    let mut own_bare_cpu = Duration::ZERO;
    for w in 0..s.writes {
        let i = w + 1;
        // The store key.
        let before: Vec<u64> = stores.iter().map(EtcdDirectiveStore::swaps).collect();
        let (sc0, pc0, oc0) = (pid_cpu(server_pid), cpu_of(&proxy_pids), process_cpu());
        let ack = writer.put(&store_key, values.value(i))?;
        let deadline = mono() + s.cap;
        while mono() < deadline && stores.iter().zip(&before).any(|(st, &b)| st.swaps() == b) {
            std::thread::sleep(Duration::from_micros(200));
        }
        server_cpu += pid_cpu(server_pid).saturating_sub(sc0);
        proxy_cpu += cpu_of(&proxy_pids).saturating_sub(pc0);
        own_store_cpu += process_cpu().saturating_sub(oc0);
        let stamps: Option<Vec<u64>> = stores
            .iter()
            .zip(&before)
            .map(|(st, &b)| {
                let status = st.status();
                (st.swaps() != b && status.applied_revision >= ack.revision)
                    .then_some(status.last_update_unix_nanos)
                    .flatten()
            })
            .collect();
        match stamps.and_then(|v| v.into_iter().max()) {
            Some(last) => store_every.push(signed_delta(last, ack.sent)),
            None => store_missed += 1,
        }
        // The bare key.
        let oc0 = process_cpu();
        let ack = writer.put(&bare_key, values.value(i))?;
        let deadline = mono() + s.cap;
        let seen = |fleets: &[BareFleet]| -> Option<u64> {
            let mut last = 0;
            for f in fleets {
                for slot in &f.slots {
                    last = last.max(slot.seen(ack.revision)?);
                }
            }
            Some(last)
        };
        let mut got = seen(&bare);
        while got.is_none() && mono() < deadline {
            std::thread::sleep(Duration::from_micros(200));
            got = seen(&bare);
        }
        own_bare_cpu += process_cpu().saturating_sub(oc0);
        match got {
            Some(last) => bare_every.push(signed_delta(last, ack.sent)),
            None => bare_missed += 1,
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    let reconnects: u64 = stores.iter().map(|st| st.status().reconnects).sum();
    drop(bare);
    drop(stores);
    #[allow(clippy::cast_precision_loss)]
    let per = |d: Duration| d.as_secs_f64() * 1e3 / s.writes.max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    let per_store = (server_rss_with as f64 - server_rss_before as f64) / n.max(1) as f64;
    Ok(TopologyRun {
        etcd: cluster.etcd_version(),
        topology: name(k),
        proxies: k,
        stores: n,
        server_rss_before_kib: server_rss_before,
        server_rss_with_stores_kib: server_rss_with,
        server_rss_per_store_kib: per_store,
        server_heap_before_kib: server_heap_before,
        server_heap_with_stores_kib: server_heap_with,
        server_cpu_per_publish_ms: per(server_cpu),
        proxy_rss_kib: proxy_rss,
        proxy_cpu_per_publish_ms: per(proxy_cpu),
        store_every_sent: Summary::of(&store_every, store_missed),
        bare_every_sent: Summary::of(&bare_every, bare_missed),
        reconnects: reconnects.saturating_sub(reconnects0),
        server_watchers,
        server_watch_streams,
        harness_cpu_per_store_write_ms: per(own_store_cpu),
        harness_cpu_per_bare_write_ms: per(own_bare_cpu),
    })
}

/// The topology table (Markdown).
pub fn table(runs: &[TopologyRun]) -> String {
    use crate::report::f3;
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.topology.clone(),
                r.stores.to_string(),
                format!(
                    "{} → {} ({:.1}/store); {} watchers",
                    r.server_rss_before_kib,
                    r.server_rss_with_stores_kib,
                    r.server_rss_per_store_kib,
                    r.server_watchers
                        .map_or_else(|| "?".to_owned(), |w| w.to_string())
                ),
                match (r.server_heap_before_kib, r.server_heap_with_stores_kib) {
                    (Some(b), Some(w)) => format!("{b:.0} → {w:.0}"),
                    _ => "?".into(),
                },
                format!("{:.3}", r.server_cpu_per_publish_ms),
                if r.proxies == 0 {
                    "–".into()
                } else {
                    format!(
                        "{} KiB, {:.3} ms",
                        r.proxy_rss_kib, r.proxy_cpu_per_publish_ms
                    )
                },
                format!(
                    "{} / {}",
                    f3(r.store_every_sent.p50_ms),
                    f3(r.store_every_sent.p99_ms)
                ),
                format!(
                    "{} / {}",
                    f3(r.bare_every_sent.p50_ms),
                    f3(r.bare_every_sent.p99_ms)
                ),
                format!(
                    "{} + {}",
                    r.store_every_sent.missed, r.bare_every_sent.missed
                ),
                r.reconnects.to_string(),
            ]
        })
        .collect();
    crate::report::table(
        "Fleet topology: direct, through one and two grpc-proxies (each on a fresh etcd)",
        &[
            "topology",
            "stores",
            "etcd server RSS KiB; its watchers",
            "server live heap KiB (after GC)",
            "server CPU ms/publish",
            "proxies RSS, CPU ms/publish",
            "every store p50 / p99 ms (from sent)",
            "bare fleet p50 / p99 ms",
            "missed",
            "reconnects",
        ],
        &rows,
    )
}

/// The targets over a topology phase, as ratios within the run.
pub fn targets(runs: &[TopologyRun]) -> Vec<crate::target::Target> {
    use crate::target::Target;
    let mut out = Vec::new();
    let Some(n) = runs.iter().map(|r| r.stores).max() else {
        return out;
    };
    let at = |k: usize| runs.iter().find(|r| r.proxies == k && r.stores == n);
    // Memory per *added* store: the slope between the two largest fleets
    // through one proxy, on the server's live heap after a forced
    // collection. The growth itself has a fixed part (the proxy's own
    // connection and watchers) that a fleet of any size pays once; RSS is
    // reported beside it, but it moves with the Go collector's timing by
    // more than a store's share.
    #[allow(clippy::cast_precision_loss)]
    let rss_growth =
        |r: &TopologyRun| r.server_rss_with_stores_kib as f64 - r.server_rss_before_kib as f64;
    let heap_growth = |r: &TopologyRun| {
        crate::target::sub(r.server_heap_with_stores_kib, r.server_heap_before_kib)
    };
    let mut one_proxy: Vec<&TopologyRun> = runs.iter().filter(|r| r.proxies == 1).collect();
    one_proxy.sort_by_key(|r| r.stores);
    if let [.., small, big] = one_proxy.as_slice() {
        #[allow(clippy::cast_precision_loss)]
        let added = (big.stores - small.stores).max(1) as f64;
        let slope = crate::target::sub(heap_growth(big), heap_growth(small)).map(|d| d / added);
        let direct_heap = at(0).and_then(heap_growth).map(|g| g / n.max(1) as f64);
        out.push(Target {
            name: format!(
                "etcd server memory per added store through one proxy ({} → {} stores)",
                small.stores, big.stores
            ),
            target: "≤ 1 KiB per added store".into(),
            measured: format!(
                "{} KiB of live heap (growth {} KiB at {}, {} KiB at {}; server watchers {} → {}; direct: {} KiB/store; RSS slope {:.2} KiB, noisy)",
                crate::report::f3(slope),
                crate::report::f3(heap_growth(small)),
                small.stores,
                crate::report::f3(heap_growth(big)),
                big.stores,
                small.server_watchers.unwrap_or(0),
                big.server_watchers.unwrap_or(0),
                crate::report::f3(direct_heap),
                (rss_growth(big) - rss_growth(small)) / added,
            ),
            pass: slope.map(|s| s <= 1.0),
        });
    }
    if let (Some(p), Some(d)) = (at(1), at(0)) {
        out.push(Target::ratio_at_most(
            format!("every-store p50 through one proxy vs direct, {n} stores"),
            "≤ 1.5× the direct figure of the same run",
            p.store_every_sent.p50_ms,
            d.store_every_sent.p50_ms,
            1.5,
        ));
    }
    if let Some(d) = at(0) {
        out.push(Target::ratio_at_most(
            format!("direct every-store p50 vs the bare-watch fleet, {n} stores"),
            "≤ 1.25× the bare fleet of the same run (from sent)",
            d.store_every_sent.p50_ms,
            d.bare_every_sent.p50_ms,
            1.25,
        ));
    }
    if let Some(d) = at(0) {
        out.push(Target {
            name: format!("(context) this process's CPU per write, {n} stores vs {n} bare watches"),
            target: "not a target: the decode and swap every store does".into(),
            measured: format!(
                "{:.3} ms vs {:.3} ms on a {}-core machine",
                d.harness_cpu_per_store_write_ms,
                d.harness_cpu_per_bare_write_ms,
                std::thread::available_parallelism().map_or(1, usize::from)
            ),
            pass: None,
        });
    }
    let reconnects: u64 = runs
        .iter()
        .filter(|r| r.proxies > 0)
        .map(|r| r.reconnects)
        .sum();
    out.push(Target {
        name: "reconnects through the proxies during the topology runs".into(),
        target: "0".into(),
        measured: reconnects.to_string(),
        pass: Some(reconnects == 0),
    });
    out
}

/// `topology.svg` in `dir`: per topology against the fleet size, the etcd
/// server's memory growth (left) and every-store p50 from the put being
/// sent, with the bare fleet of the same topology dashed (right). Log-log.
pub fn plot(dir: &std::path::Path, runs: &[TopologyRun]) -> Res<std::path::PathBuf> {
    use plotters::prelude::*;
    const COLOURS: [RGBColor; 3] = [
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0x2c, 0xa0, 0x2c),
    ];
    std::fs::create_dir_all(dir)?;
    let path = dir.join("topology.svg");
    let mut kinds: Vec<usize> = runs.iter().map(|r| r.proxies).collect();
    kinds.sort_unstable();
    kinds.dedup();
    #[allow(clippy::cast_precision_loss)]
    let x_max = runs.iter().map(|r| r.stores).max().unwrap_or(1) as f64 * 2.0;
    let root = SVGBackend::new(&path, (1100, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(550);
    type Pick = fn(&TopologyRun) -> Option<f64>;
    type Panel = (&'static str, &'static str, Pick, Option<Pick>);
    let panels: [Panel; 2] = [
        (
            "etcd server memory growth with the fleet",
            "KiB (log)",
            |r| {
                #[allow(clippy::cast_precision_loss)]
                let g = r.server_rss_with_stores_kib as f64 - r.server_rss_before_kib as f64;
                Some(g.max(1.0))
            },
            None,
        ),
        (
            "every store has it (solid), bare fleet (dashed)",
            "ms after the put was sent (log)",
            |r| r.store_every_sent.p50_ms,
            Some(|r| r.bare_every_sent.p50_ms),
        ),
    ];
    for (area, (title, y_desc, pick, second)) in [&left, &right].into_iter().zip(panels) {
        let ys: Vec<f64> = runs
            .iter()
            .flat_map(|r| [pick(r), second.and_then(|s| s(r))])
            .flatten()
            .collect();
        let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() {
            ((lo * 0.5).max(0.01), hi * 2.0)
        } else {
            (0.1, 10.0)
        };
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((0.7f64..x_max).log_scale(), (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .max_light_lines(3)
            .x_desc("stores (log)")
            .y_desc(y_desc)
            .draw()?;
        for (i, &k) in kinds.iter().enumerate() {
            let c = COLOURS[i % COLOURS.len()];
            #[allow(clippy::cast_precision_loss)]
            let series = |f: Pick| -> Vec<(f64, f64)> {
                runs.iter()
                    .filter(|r| r.proxies == k)
                    .filter_map(|r| f(r).map(|y| (r.stores as f64, y.max(lo))))
                    .collect()
            };
            let main = series(pick);
            chart
                .draw_series(LineSeries::new(main.clone(), c.stroke_width(2)))?
                .label(name(k))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart.draw_series(main.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
            if let Some(s) = second {
                let bare = series(s);
                chart.draw_series(DashedLineSeries::new(
                    bare,
                    6,
                    4,
                    c.mix(0.7).stroke_width(1),
                ))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()?;
    }
    root.present()?;
    Ok(dir.join("topology.svg"))
}
