//! Hot reload: a valid file swaps in without dropping connections, an
//! invalid one is refused and counted, a ConfigMap-style symlink swap is
//! noticed.

use std::time::Duration;

use http::StatusCode;
use paymesh_system_tests::in_process::*;

const NEW_KEY: &str = "sk_test_rotated";

async fn metric_value(sc: &Sidecar, series: &str) -> f64 {
    let text = get(&sc.admin_url("/metrics")).await.body;
    metric(&String::from_utf8_lossy(&text), series).unwrap_or(0.0)
}

async fn version(sc: &Sidecar) -> u64 {
    get(&sc.admin_url("/admin/state")).await.json()["config"]["version"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_file_swaps_in_and_an_invalid_one_is_refused() {
    let app = upstream().await;
    let yaml = config_yaml(app.addr, "");
    let sc = sidecar(&yaml).await;
    assert_eq!(charge(&sc, CHECKOUT_KEY, "1").await.status, StatusCode::CREATED);

    // Rotate checkout's key and raise the charge share to 100%.
    let dir = sc.dir.path().to_str().unwrap().to_owned();
    let rotated = yaml.replace(&sha256_hex(CHECKOUT_KEY), &sha256_hex(NEW_KEY)).replace("{dir}", &dir)
        + "migration: { etcd_endpoints: [], defaults: { charge: 100 } }\n";
    write_atomically(&sc.config_path, &rotated);
    eventually(Duration::from_secs(10), "new key accepted", || async {
        charge(&sc, NEW_KEY, "2").await.status == StatusCode::CREATED
    })
    .await;
    assert_eq!(charge(&sc, CHECKOUT_KEY, "3").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(charge(&sc, NEW_KEY, "4").await.json()["headers"]["x-paymesh-route"], "orchestration");
    assert_eq!(version(&sc).await, 2);
    assert_eq!(metric_value(&sc, "paymesh_config_reloads_total").await, 1.0);

    // An invalid file changes nothing.
    write_atomically(&sc.config_path, &rotated.replace("burst: 1000", "burst: 1000, brust: 1"));
    eventually(Duration::from_secs(10), "reload error counted", || async {
        metric_value(&sc, "paymesh_config_reload_errors_total").await == 1.0
    })
    .await;
    assert_eq!(charge(&sc, NEW_KEY, "5").await.status, StatusCode::CREATED);
    assert_eq!(version(&sc).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_open_connections() {
    let app = upstream().await;
    let yaml = config_yaml(app.addr, "");
    let sc = sidecar(&yaml).await;
    // One keep-alive client for the whole test: its pooled connection must
    // survive the reload.
    let client = client();
    let req = || {
        http::Request::post(sc.url("/v1/charges"))
            .header("authorization", format!("Bearer {CHECKOUT_KEY}"))
            .header("idempotency-key", "k")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            .unwrap()
    };
    assert_eq!(client.request(req()).await.unwrap().status(), StatusCode::CREATED);
    let dir = sc.dir.path().to_str().unwrap().to_owned();
    write_atomically(&sc.config_path, &(yaml.replace("{dir}", &dir) + "limits: { max_body_bytes: 4096 }\n"));
    eventually(Duration::from_secs(10), "reloaded", || async { version(&sc).await == 2 }).await;
    assert_eq!(client.request(req()).await.unwrap().status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_symlink_swap_is_noticed() {
    let app = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let yaml = config_yaml(app.addr, "").replace("{dir}", d.to_str().unwrap());
    // The layout the kubelet makes: file -> ..data/file, ..data -> ..v1.
    std::fs::create_dir(d.join("..v1")).unwrap();
    std::fs::write(d.join("..v1/sidecar.yaml"), &yaml).unwrap();
    std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/sidecar.yaml", d.join("sidecar.yaml")).unwrap();
    let config_path = d.join("sidecar.yaml");
    let sc = start_with(dir, config_path).await;
    assert_eq!(charge(&sc, NEW_KEY, "1").await.status, StatusCode::UNAUTHORIZED);

    let d = sc.dir.path();
    std::fs::create_dir(d.join("..v2")).unwrap();
    std::fs::write(d.join("..v2/sidecar.yaml"), yaml.replace(&sha256_hex(CHECKOUT_KEY), &sha256_hex(NEW_KEY))).unwrap();
    std::os::unix::fs::symlink("..v2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    eventually(Duration::from_secs(10), "swapped config in force", || async {
        charge(&sc, NEW_KEY, "2").await.status == StatusCode::CREATED
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reload_applies_the_file_now() {
    let app = upstream().await;
    let yaml = with_admin_token(&config_yaml(app.addr, ""));
    let sc = sidecar(&yaml).await;
    assert_eq!(
        send(http::Method::GET, &sc.admin_url("/admin/reload"), &[ADMIN_AUTH], "").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let dir = sc.dir.path().to_str().unwrap().to_owned();
    std::fs::write(&sc.config_path, yaml.replace("{dir}", &dir).replace("burst: 2 }", "burst: 3 }")).unwrap();
    let r = send(http::Method::POST, &sc.admin_url("/admin/reload"), &[ADMIN_AUTH], "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    eventually(Duration::from_secs(5), "payouts burst is 3", || async {
        get(&sc.admin_url("/admin/state")).await.json()["clients"][1]["rate"]["burst"] == 3
    })
    .await;
}
