//! `kiln analyze --html` in a real browser: Debian's headless Chromium,
//! driven over the DevTools protocol. The page must render its treemap with
//! the largest directory visible, zoom in on a click, and screenshot as
//! something other than a blank page. Needs root, the base images and
//! `chromium` (`scripts/setup.sh` installs it).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use kiln_testkit as tk;
use serde_json::{json, Value};

fn kiln(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.arg("--root").arg(root);
    c
}

fn ok(c: &mut Command) -> String {
    let o = c.output().expect("run");
    assert!(
        o.status.success(),
        "{c:?} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const DOCKERFILE: &str = "FROM busybox
RUN mkdir -p /srv/data/a && head -c 3000000 /dev/urandom > /srv/data/a/big && head -c 1000000 /dev/urandom > /srv/data/small
RUN head -c 500000 /dev/urandom > /srv/notes
";

/// A headless Chromium with a DevTools connection to its page.
struct Browser {
    child: Child,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    fn open(url: &str, profile: &Path) -> Browser {
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .args(["--remote-debugging-port=0", "--window-size=1200,900"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // Chromium prints its DevTools endpoint on stderr once it listens.
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let port = loop {
            let mut line = String::new();
            let n = stderr.read_line(&mut line).unwrap();
            assert!(n > 0, "chromium exited before listening:\n{seen}");
            seen.push_str(&line);
            if let Some(rest) = line
                .trim()
                .strip_prefix("DevTools listening on ws://127.0.0.1:")
            {
                break rest.split('/').next().unwrap().parse::<u16>().unwrap();
            }
        };
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let page = std::panic::catch_unwind(|| page_socket(port, url)).unwrap_or_else(|e| {
            let _ = child.kill();
            let _ = child.wait();
            std::panic::resume_unwind(e)
        });
        let Ok((ws, _)) = tungstenite::connect(&page) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cannot connect to the page's DevTools socket {page}");
        };
        Browser {
            child,
            ws,
            next_id: 0,
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(tungstenite::Message::text(msg)).unwrap();
        loop {
            let m = self.ws.read().expect("DevTools message");
            let Ok(v) = serde_json::from_str::<Value>(m.to_text().unwrap_or("")) else {
                continue;
            };
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
        r["result"]["value"].clone()
    }

    /// Polls until `js` is true (the page renders after load).
    fn wait_for(&mut self, js: &str) {
        for _ in 0..300 {
            if self.eval(js) == true {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "page never satisfied {js}; body: {}",
            self.eval("document.body.innerText")
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The DevTools WebSocket of the page showing `url`, from `/json/list`.
fn page_socket(port: u16, url: &str) -> String {
    let mut last = Value::Null;
    for _ in 0..100 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        )
        .unwrap();
        let body = http_body(&mut s);
        let list: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let page = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["type"] == "page" && t["url"] == url);
        if let Some(p) = page {
            return p["webSocketDebuggerUrl"].as_str().unwrap().to_string();
        }
        last = list;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("chromium has no page for {url}: {last}");
}

/// Reads one HTTP response and returns its body (Content-Length framed;
/// Chromium keeps the connection open).
fn http_body(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return body[..len].to_string();
            }
        }
        let n = s.read(&mut chunk).unwrap();
        if n == 0 {
            return text
                .split_once("\r\n\r\n")
                .map_or(String::new(), |(_, b)| b.to_string());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn html_report_renders_zooms_and_is_not_blank_in_chromium() {
    let have_chromium = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(tk::require_root()
        && tk::require_base_images()
        && tk::require("chromium (Debian package)", have_chromium))
    {
        return;
    }
    let tmp = tk::tempdir();
    let (root, ctx) = (tmp.path().join("root"), tmp.path().join("ctx"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    ok(kiln(&root)
        .arg("import")
        .arg(tk::busybox_rootfs_tar())
        .arg("busybox:latest"));
    let tag = common::unique("kiln-html");
    ok(kiln(&root).args(["build", "-q", "-t", &tag]).arg(&ctx));
    let report = tmp.path().join("report.html");
    let analysis: Value = serde_json::from_str(&ok(kiln(&root)
        .args(["analyze", "--format", "json", &tag, "--html"])
        .arg(&report)))
    .unwrap();
    let largest = analysis["largest_dirs"][0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(largest, "/srv");
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads nothing from the network"
    );

    let url = format!("file://{}", report.display());
    let mut b = Browser::open(&url, &tmp.path().join("profile"));
    b.wait_for("document.querySelectorAll('#map .box').length > 0");
    assert_eq!(
        b.eval("document.querySelectorAll('#layers tbody tr').length"),
        3
    );
    // The largest directory is a visible box, biggest on the map.
    let rect = b.eval(&format!(
        "(() => {{ const r = document.querySelector('[data-path=\"{largest}\"]').getBoundingClientRect();
                  return [r.x, r.y, r.width, r.height, innerWidth, innerHeight]; }})()"
    ));
    let r: Vec<f64> = rect
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        r[2] > 100.0 && r[3] > 100.0 && r[0] >= 0.0 && r[1] >= 0.0 && r[0] + r[2] <= r[4],
        "{r:?}"
    );
    let text = b.eval(&format!(
        "document.querySelector('[data-path=\"{largest}\"]').innerText"
    ));
    assert!(text.as_str().unwrap().contains("srv/"), "{text}");

    // A real mouse click in its middle zooms into it.
    let (x, y) = (r[0] + r[2] / 2.0, r[1] + r[3] / 2.0);
    for kind in ["mousePressed", "mouseReleased"] {
        b.call(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
        );
    }
    b.wait_for("document.getElementById('map').dataset.current === '/srv'");
    assert_eq!(
        b.eval("!!document.querySelector('[data-path=\"/srv/data\"]')"),
        true
    );
    assert_eq!(
        b.eval("!!document.querySelector('[data-path=\"/srv/notes\"]')"),
        true
    );

    let shot = b.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let colours: std::collections::BTreeSet<&[u8]> = buf[..info.buffer_size()]
        .chunks(px)
        .map(|c| &c[..3])
        .collect();
    assert!(
        colours.len() > 20,
        "screenshot looks blank: {} colours",
        colours.len()
    );
    if let Ok(dest) = std::env::var("KILN_TREEMAP_SCREENSHOT") {
        std::fs::write(dest, &png).unwrap();
    }
}
