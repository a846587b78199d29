//! The application's authorization hook and the server's cancel, through the real binary.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(60);

#[test]
fn authorize_hook_rejecting_the_download_sends_rejected_and_downloads_nothing() {
    let server = DdiServer::start();
    let v1 = script_image("1.0.0", true, 0);
    let v2 = script_image("2.0.0", true, 0);
    let mut dev = Device::new(&server, &v1, 1, 4096);
    let args = dev.path("hook-args");
    dev.set_authorize(&format!(
        "echo \"$UPDRAFT_PHASE\" >> {}; echo reject; true",
        args.display()
    ));
    server.deploy(3, "2.0.0", dev.envelope(&v2, 2, "2.0.0"), v2);
    dev.boot();

    let fin = server.wait_final(T);
    assert_eq!(fin["status"]["execution"], "rejected", "{fin}");
    assert!(
        details(&fin).contains("download of 2.0.0 rejected"),
        "{fin}"
    );
    assert_eq!(std::fs::read_to_string(&args).unwrap(), "download\n");
    assert!(server.state.lock().unwrap().served.is_empty());
    assert_eq!(status_line(&dev.status(), "active slot"), "A");
}

#[test]
fn deferred_download_is_scheduled_and_a_cancel_before_install_is_accepted() {
    let server = DdiServer::start();
    let v1 = script_image("1.0.0", true, 0);
    let v2 = script_image("2.0.0", true, 0);
    let mut dev = Device::new(&server, &v1, 1, 4096);
    dev.set_authorize("exit 2");
    server.deploy(4, "2.0.0", dev.envelope(&v2, 2, "2.0.0"), v2);
    dev.boot();

    let scheduled = wait_until(T, || {
        server
            .feedback()
            .iter()
            .any(|f| f["status"]["execution"] == "scheduled")
    });
    assert!(scheduled, "{:#?}\n{}", server.feedback(), dev.log());
    server.state.lock().unwrap().cancel = true;
    let cancelled = wait_until(T, || {
        !server.state.lock().unwrap().cancel_feedback.is_empty()
    });
    assert!(cancelled, "{}", dev.log());
    let fb = server.state.lock().unwrap().cancel_feedback[0].clone();
    assert_eq!(fb["status"]["execution"], "closed", "{fb}");
    assert_eq!(fb["status"]["result"]["finished"], "success", "{fb}");
    assert!(server.state.lock().unwrap().served.is_empty());
    let status = dev.status();
    assert_eq!(
        status_line(&status, "journal"),
        "None at offset 0",
        "{status}"
    );
    assert_eq!(status_line(&status, "state"), "idle", "{status}");
}

#[test]
fn cancel_during_the_download_is_accepted_and_the_device_stays_on_v1() {
    let server = DdiServer::start();
    let v1 = script_image("1.0.0", true, 0);
    let v2 = script_image("2.0.0", true, 128 * 1024);
    let mut dev = Device::new(&server, &v1, 1, 4096);
    server.state.lock().unwrap().throttle = Some(Duration::from_millis(4));
    let total = v2.len() as u64;
    server.deploy(5, "2.0.0", dev.envelope(&v2, 2, "2.0.0"), v2);
    dev.boot();

    let started = wait_until(T, || {
        let s = server.state.lock().unwrap();
        s.served.iter().map(|r| r.written).sum::<u64>() >= total / 4
    });
    assert!(started, "{}", dev.log());
    server.state.lock().unwrap().cancel = true;
    let cancelled = wait_until(T, || {
        !server.state.lock().unwrap().cancel_feedback.is_empty()
    });
    assert!(cancelled, "{}", dev.log());
    let s = server.state.lock().unwrap();
    assert_eq!(s.cancel_feedback[0]["status"]["execution"], "closed");
    let served: u64 = s.served.iter().map(|r| r.written).sum();
    assert!(
        served < total,
        "stopped before the end ({served} of {total})"
    );
    drop(s);
    let status = dev.status();
    assert_eq!(
        status_line(&status, "journal"),
        "None at offset 0",
        "{status}"
    );
    assert_eq!(status_line(&status, "active slot"), "A", "{status}");
    assert!(dev.is_running());
}
