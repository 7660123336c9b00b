//! `kiln analyze --html`: one self-contained page (no network) with a
//! zoomable treemap of the final filesystem, each file coloured by the layer
//! that added it, and the layer table. The page script is in `report.js`.

use serde_json::{json, Value};

use crate::fs::Kind;
use crate::report::{human_size, short_command, Analysis};

/// Directories list at most this many files; the rest become one box.
const MAX_CHILDREN: usize = 300;

const SCRIPT: &str = include_str!("report.js");
const STYLE: &str = include_str!("report.css");

pub fn render(a: &Analysis) -> String {
    let tree = tree(a);
    let layers: Vec<Value> = a
        .layers
        .iter()
        .map(|l| {
            json!({
                "index": l.index,
                "by": short_command(&l.created_by, 90),
                "compressed": human_size(l.compressed),
                "uncompressed": human_size(l.uncompressed),
                "wasted": human_size(l.wasted_later),
            })
        })
        .collect();
    let data = json!({
        "image": a.image,
        "tree": tree,
        "layers": layers,
        "summary": format!(
            "{} uncompressed, {} compressed, {} wasted, efficiency {:.3}",
            human_size(a.totals.uncompressed),
            human_size(a.totals.compressed),
            human_size(a.totals.wasted),
            a.totals.efficiency
        ),
    });
    // `</` cannot end the script element early when escaped.
    let data = data.to_string().replace("</", "<\\/");
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>kiln analyze: {title}</title><style>{STYLE}</style></head>\
         <body><header><h1>{title}</h1><p id=\"summary\"></p>\
         <nav id=\"crumb\"></nav></header><div id=\"map\"></div>\
         <table id=\"layers\"><thead><tr><th></th><th>layer</th><th>compressed</th>\
         <th>uncompressed</th><th>wasted later</th><th>created by</th></tr></thead><tbody></tbody></table>\
         <script id=\"data\" type=\"application/json\">{data}</script>\
         <script>{SCRIPT}</script></body></html>\n",
        title = escape(&a.image),
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `{n: name, s: size, l: layer, c: [children]}`, children by size.
fn tree(a: &Analysis) -> Value {
    #[derive(Default)]
    struct Dir {
        files: Vec<(String, u64, usize)>,
        dirs: std::collections::BTreeMap<String, Dir>,
    }
    let mut root = Dir::default();
    for (path, node) in &a.fs.nodes {
        if node.kind != Kind::File {
            continue;
        }
        let mut parts: Vec<&str> = path.split('/').collect();
        let name = parts.pop().unwrap_or_default().to_string();
        let mut dir = &mut root;
        for p in parts {
            dir = dir.dirs.entry(p.to_string()).or_default();
        }
        dir.files.push((name, node.size, node.layer));
    }
    fn to_json(name: &str, d: Dir) -> (Value, u64) {
        let mut children: Vec<(Value, u64)> = d
            .dirs
            .into_iter()
            .map(|(n, sub)| to_json(&n, sub))
            .collect();
        let mut files = d.files;
        files.sort_by_key(|f| std::cmp::Reverse(f.1));
        let rest: Vec<_> = files.split_off(files.len().min(MAX_CHILDREN));
        children.extend(
            files
                .into_iter()
                .map(|(n, s, l)| (json!({"n": n, "s": s, "l": l}), s)),
        );
        if !rest.is_empty() {
            let s: u64 = rest.iter().map(|r| r.1).sum();
            let l = rest[0].2;
            children.push((
                json!({"n": format!("({} more files)", rest.len()), "s": s, "l": l}),
                s,
            ));
        }
        children.sort_by_key(|c| std::cmp::Reverse(c.1));
        let size = children.iter().map(|c| c.1).sum();
        let c: Vec<Value> = children.into_iter().map(|c| c.0).collect();
        (json!({"n": name, "s": size, "c": c}), size)
    }
    to_json("", root).0
}
