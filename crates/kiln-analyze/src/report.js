// Treemap of the final filesystem: boxes sized by bytes, coloured by the
// layer that added a file (a directory takes the colour of the layer that
// contributes most of its bytes). Click a directory to zoom in.
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const colour = (l) => `hsl(${(l * 137.5) % 360}, 62%, 68%)`;
const human = (n) => {
  const u = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i === 0 ? n : n.toPrecision(3)) + u[i];
};

function dominant(node) {
  if (node.c === undefined) return node.l;
  if (node.dom !== undefined) return node.dom;
  const by = {};
  const walk = (n) => n.c ? n.c.forEach(walk) : (by[n.l] = (by[n.l] || 0) + n.s);
  walk(node);
  let best = 0, most = -1;
  for (const [l, s] of Object.entries(by)) if (s > most) { most = s; best = +l; }
  return (node.dom = best);
}

// Squarified treemap (Bruls, Huizing, van Wijk) of items with .s into a rect.
function squarify(items, x, y, w, h) {
  const out = [];
  const total = items.reduce((a, b) => a + b.s, 0);
  if (total <= 0) return out;
  const scale = (w * h) / total;
  let rest = items.filter((i) => i.s > 0).map((i) => ({ item: i, area: i.s * scale }));
  while (rest.length) {
    const side = Math.min(w, h);
    let row = [rest[0]], i = 1;
    const worst = (r) => {
      const sum = r.reduce((a, b) => a + b.area, 0);
      const max = Math.max(...r.map((b) => b.area)), min = Math.min(...r.map((b) => b.area));
      return Math.max((side * side * max) / (sum * sum), (sum * sum) / (side * side * min));
    };
    while (i < rest.length && worst(row.concat([rest[i]])) <= worst(row)) row.push(rest[i++]);
    rest = rest.slice(i);
    const sum = row.reduce((a, b) => a + b.area, 0);
    const thick = sum / side;
    let off = 0;
    for (const r of row) {
      const len = r.area / thick;
      if (w >= h) out.push({ item: r.item, x: x, y: y + off, w: thick, h: len });
      else out.push({ item: r.item, x: x + off, y: y, w: len, h: thick });
      off += len;
    }
    if (w >= h) { x += thick; w -= thick; } else { y += thick; h -= thick; }
  }
  return out;
}

let path = [data.tree];
function show() {
  const map = document.getElementById("map");
  map.innerHTML = "";
  const node = path[path.length - 1];
  const where = "/" + path.slice(1).map((n) => n.n).join("/");
  map.dataset.current = where;
  const crumb = document.getElementById("crumb");
  crumb.innerHTML = "";
  path.forEach((n, i) => {
    const a = document.createElement("a");
    a.textContent = i === 0 ? "/ (root)" : n.n + "/";
    a.onclick = () => { path = path.slice(0, i + 1); show(); };
    crumb.appendChild(a);
  });
  const boxes = squarify(node.c || [], 0, 0, map.clientWidth, map.clientHeight);
  for (const b of boxes) {
    const el = document.createElement("div");
    const isDir = b.item.c !== undefined;
    el.className = isDir ? "box dir" : "box";
    el.dataset.path = (where === "/" ? "" : where) + "/" + b.item.n;
    el.style.left = b.x + "px"; el.style.top = b.y + "px";
    el.style.width = b.w + "px"; el.style.height = b.h + "px";
    el.style.background = colour(dominant(b.item));
    el.title = `${el.dataset.path}${isDir ? "/" : ""} ${human(b.item.s)} (layer ${dominant(b.item)})`;
    el.textContent = b.item.n + (isDir ? "/" : "");
    const size = document.createElement("span");
    size.textContent = human(b.item.s);
    el.appendChild(size);
    if (isDir) el.onclick = () => { path.push(b.item); show(); };
    map.appendChild(el);
  }
}

document.getElementById("summary").textContent = data.summary;
const body = document.querySelector("#layers tbody");
for (const l of data.layers) {
  const tr = document.createElement("tr");
  const cells = ["", l.index, l.compressed, l.uncompressed, l.wasted, l.by];
  cells.forEach((c, i) => {
    const td = document.createElement("td");
    td.textContent = c;
    if (i === 0) { td.className = "swatch"; td.style.background = colour(l.index); }
    tr.appendChild(td);
  });
  body.appendChild(tr);
}
show();
