//! Whole updates through the real `updraft-agent` binary against the DDI stand-in: the images
//! are shell scripts that exec the agent, so install → reboot → trial → confirm runs for real.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(60);

fn executions(server: &DdiServer) -> Vec<String> {
    server
        .feedback()
        .iter()
        .map(|f| f["status"]["execution"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn update_downloads_verifies_installs_execs_the_new_image_and_reports_its_version() {
    let server = DdiServer::start();
    let v1 = script_image("1.0.0", true, 0);
    let v2 = script_image("2.0.0", true, 40_000);
    let mut dev = Device::new(&server, &v1, 1, 4096);
    server.deploy(7, "2.0.0", dev.envelope(&v2, 2, "2.0.0"), v2.clone());
    dev.boot();

    let fin = server.wait_final(T);
    assert_eq!(fin["status"]["execution"], "closed", "{fin}\n{}", dev.log());
    assert_eq!(fin["status"]["result"]["finished"], "success");
    assert!(details(&fin).contains("installed version 2.0.0"), "{fin}");
    let ex = executions(&server);
    for want in ["download", "proceeding", "downloaded"] {
        assert!(ex.iter().any(|e| e == want), "{want} missing in {ex:?}");
    }
    let progress: Vec<u64> = server
        .feedback()
        .iter()
        .filter_map(|f| f["status"]["result"]["progress"]["cnt"].as_u64())
        .collect();
    assert!(
        progress.contains(&100) && progress.len() >= 10,
        "{progress:?}"
    );
    assert_eq!(slot(&dev, "slot-b"), v2, "slot B holds exactly the image");
    assert!(dev.is_running(), "the new image runs the agent");

    let status = dev.status();
    assert_eq!(
        status_line(&status, "installed version"),
        "2.0.0",
        "{status}"
    );
    assert_eq!(status_line(&status, "active slot"), "B", "{status}");
    assert_eq!(status_line(&status, "installed sequence"), "2", "{status}");
    assert_eq!(status_line(&status, "result"), "success", "{status}");
    let blocks = v2.len().div_ceil(4096);
    assert!(
        status_line(&status, "blocks").contains(&format!("processed {blocks} ")),
        "statistics add up over the agent's processes: {status}"
    );
    assert!(dev.log().contains("dev-1"), "logs carry the device id");
    let attrs = server.state.lock().unwrap().config_data.clone().unwrap();
    assert_eq!(attrs["mode"], "merge");
    assert_eq!(
        attrs["data"]["updraft.installed_version"], "1.0.0",
        "{attrs}"
    );
}

#[test]
fn tampered_image_fails_with_the_integrity_reason_and_the_device_stays_on_v1() {
    let server = DdiServer::start();
    let v1 = script_image("1.0.0", true, 0);
    let v2 = script_image("2.0.0", true, 20_000);
    let mut dev = Device::new(&server, &v1, 1, 4096);
    let env = dev.envelope(&v2, 2, "2.0.0");
    let mut tampered = v2.clone();
    tampered[10_000] ^= 0x20;
    server.deploy(8, "2.0.0", env, tampered);
    dev.boot();

    let fin = server.wait_final(T);
    assert_eq!(fin["status"]["execution"], "closed", "{fin}");
    assert_eq!(fin["status"]["result"]["finished"], "failure");
    assert!(details(&fin).contains("integrity"), "{fin}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(dev.is_running(), "v1 keeps running:\n{}", dev.log());
    let status = dev.status();
    assert_eq!(status_line(&status, "active slot"), "A", "{status}");
    assert_eq!(status_line(&status, "installed sequence"), "1", "{status}");
    assert_eq!(status_line(&status, "trial"), "none", "{status}");
}

#[test]
fn downgrade_manifest_is_rejected_and_the_device_stays_on_v1() {
    let server = DdiServer::start();
    let v1 = script_image("1.0.0", true, 0);
    let old = script_image("0.9.0", true, 0);
    let mut dev = Device::new(&server, &v1, 5, 4096);
    server.deploy(9, "0.9.0", dev.envelope(&old, 3, "0.9.0"), old.clone());
    dev.boot();

    let fin = server.wait_final(T);
    assert_eq!(fin["status"]["execution"], "rejected", "{fin}");
    assert!(details(&fin).contains("downgrade"), "{fin}");
    assert!(
        !executions(&server).iter().any(|e| e == "download"),
        "nothing downloaded"
    );
    let status = dev.status();
    assert_eq!(status_line(&status, "active slot"), "A", "{status}");
    assert_eq!(status_line(&status, "installed sequence"), "5", "{status}");
    assert!(slot(&dev, "slot-b").is_empty(), "slot B untouched");
}

#[test]
fn failing_self_test_reverts_to_v1_and_reports_the_failure() {
    let server = DdiServer::start();
    let v1 = script_image("1.0.0", true, 0);
    let broken = script_image("2.0.0", false, 0);
    let mut dev = Device::new(&server, &v1, 1, 4096);
    server.deploy(
        10,
        "2.0.0",
        dev.envelope(&broken, 2, "2.0.0"),
        broken.clone(),
    );
    dev.boot();

    let fin = server.wait_final(T);
    assert_eq!(fin["status"]["execution"], "closed", "{fin}\n{}", dev.log());
    assert_eq!(fin["status"]["result"]["finished"], "failure");
    let d = details(&fin);
    assert!(
        d.contains("self-test failed") && d.contains("reverted to version 1.0.0"),
        "{d}"
    );
    assert!(dev.is_running());
    let status = dev.status();
    assert_eq!(status_line(&status, "active slot"), "A", "{status}");
    assert_eq!(status_line(&status, "installed sequence"), "1", "{status}");
    assert_eq!(status_line(&status, "last trial"), "Rejected", "{status}");
}

#[test]
fn sigkill_mid_download_then_restart_resumes_and_redownloads_at_most_one_block() {
    const BLOCK: u64 = 4096;
    let server = DdiServer::start();
    let v1 = script_image("1.0.0", true, 0);
    let v2 = script_image("2.0.0", true, 256 * 1024);
    let mut dev = Device::new(&server, &v1, 1, BLOCK as u32);
    server.state.lock().unwrap().throttle = Some(Duration::from_millis(4));
    server.deploy(11, "2.0.0", dev.envelope(&v2, 2, "2.0.0"), v2.clone());
    dev.boot();

    let total = v2.len() as u64;
    let mid = wait_until(T, || {
        let s = server.state.lock().unwrap();
        s.served.iter().map(|r| r.written).sum::<u64>() >= total / 2
    });
    assert!(mid, "download did not progress:\n{}", dev.log());
    dev.kill();
    let before_end = {
        let mut s = server.state.lock().unwrap();
        s.epoch = 1;
        s.throttle = None;
        s.served
            .iter()
            .map(|r| r.start + r.written)
            .max()
            .unwrap_or(0)
    };
    assert!(before_end < total, "the kill landed mid-download");

    dev.boot();
    let fin = server.wait_final(T);
    assert_eq!(
        fin["status"]["result"]["finished"],
        "success",
        "{fin}\n{}",
        dev.log()
    );
    assert_eq!(slot(&dev, "slot-b"), v2);

    let s = server.state.lock().unwrap();
    let after: Vec<_> = s.served.iter().filter(|r| r.epoch == 1).collect();
    let first = after.first().map(|r| r.start).unwrap_or(0);
    assert!(first > 0, "resumed, not restarted");
    let reserved: u64 = after
        .iter()
        .map(|r| {
            (r.start + r.written)
                .min(before_end)
                .saturating_sub(r.start)
        })
        .sum();
    eprintln!(
        "resume: served before the kill up to {before_end} of {total}, restarted at {first}, re-served {reserved} bytes"
    );
    assert!(
        reserved <= BLOCK,
        "re-served {reserved} bytes (first offset {first}, served before the kill up to {before_end})"
    );
}
