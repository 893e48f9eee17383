//! The README's nightly job, whole: one config with a PostgreSQL database,
//! a Redis server and a volume directory; `cairn run` with hooks and a
//! healthchecks receiver on loopback; the Prometheus textfile scraped by a
//! real node_exporter; `status` fresh, then stale; `drill` passing, then
//! failing on a query. Needs the PostgreSQL and Redis test servers and
//! node_exporter (scripts/test.sh starts and installs them).

use std::time::Duration;

use crate::job::{data_dir, receiver, Job};
use crate::job_pg::{database, drop_database};
use crate::postgres::pg_enabled;
use crate::redis::{populate, redis_url, SERVER};
use crate::status::{node_exporter, scrape_textfiles};

#[test]
fn the_readme_nightly_job_runs_is_monitored_and_drilled() {
    let test = "the_readme_nightly_job_runs_is_monitored_and_drilled";
    if !pg_enabled(test) {
        return;
    }
    let Some(url) = redis_url(test) else { return };
    let Some(exporter) = node_exporter() else { return };
    let _guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    populate(&url);
    let db = database(50_000);
    let (hc, got) = receiver();
    let (host, port, user) =
        (std::env::var("PGHOST").unwrap(), std::env::var("PGPORT").unwrap(), std::env::var("PGUSER").unwrap());
    let job = Job::new(&format!(
        r#"
[backup]
host = "db1"
tags = ["nightly"]

[[backup.snapshots]]
name = "volumes"
sources = ["{{dir}}/data"]
exclude = ["*.tmp"]

[[backup.snapshots]]
postgres = {{ database = "{db}", host = "{host}", port = {port}, user = "{user}" }}

[[backup.snapshots]]
redis = "{url}"

[forget]
keep-daily = 7
prune = true

[check]
read-data-subset = "day/7"

[hooks]
run-before = ["echo before >> {{dir}}/hooks.log"]
run-after = ["echo after >> {{dir}}/hooks.log"]
run-finally = ["echo finally >> {{dir}}/hooks.log"]

[notify]
healthchecks = "{hc}/ping/db1"

[monitor]
prometheus-textfile = "{{dir}}/textfile/cairn.prom"
warn = "25h"
crit = "30h"

[drill]
postgres-scratch = "host={host} port={port} user={user} dbname=postgres"
postgres-queries = ["select count(*) = 50000 from orders"]
"#
    ));
    data_dir(job.dir());
    std::fs::create_dir(job.dir().join("textfile")).unwrap();

    let (code, out, err) = job.out(&["run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for name in ["volumes", db.as_str(), "redis"] {
        assert!(out.contains(&format!("{name}: snapshot ")), "{name} in:\n{out}");
    }
    assert_eq!(std::fs::read_to_string(job.dir().join("hooks.log")).unwrap(), "before\nafter\nfinally\n");
    {
        let g = got.lock().unwrap();
        let lines: Vec<&str> = g.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(lines, ["POST /ping/db1/start HTTP/1.1", "POST /ping/db1 HTTP/1.1"]);
    }

    // Fresh: OK, one line per source, perfdata.
    let (code, out, err) = job.out(&["status"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with("OK - ") && out.contains('|'), "{out}");
    for name in ["volumes", db.as_str(), "redis"] {
        assert!(out.contains(name), "{name} in:\n{out}");
    }
    // Stale: the same snapshots against a threshold they exceed.
    std::thread::sleep(Duration::from_secs(2));
    let (code, out, _) = job.out(&["status", "--warn", "1s", "--crit", "1h"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("WARNING - "), "{out}");

    // The drill passes, and its result joins the run's in the textfile.
    let (code, out, err) = job.out(&["drill"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("query `select count(*) = 50000 from orders`: true"), "{out}");

    let body = scrape_textfiles(&exporter, &job.dir().join("textfile"));
    assert!(body.lines().any(|l| l == "node_textfile_scrape_error 0"), "{body}");
    for name in ["volumes", db.as_str(), "redis"] {
        for metric in
            ["cairn_last_run_success", "cairn_last_drill_success", "cairn_snapshots", "cairn_last_check_success"]
        {
            let found = body.lines().any(|l| {
                l.starts_with(&format!("{metric}{{")) && l.contains(&format!("source=\"{name}\"")) && l.ends_with(" 1")
            });
            assert!(found, "{metric} of {name} is not 1 in:\n{body}");
        }
    }

    // A failing query: the drill fails, and status says so.
    std::fs::write(&job.config, std::fs::read_to_string(&job.config).unwrap().replace("= 50000", "= 1")).unwrap();
    let (code, out, _) = job.out(&["drill"]);
    assert_eq!(code, 1, "{out}");
    let (code, out, _) = job.out(&["status"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("WARNING - ") && out.contains("the last drill"), "{out}");
    drop_database(&db);
}
