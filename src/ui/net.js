// Whitelist entries: checked as they are typed, as the server checks them
// (keyledger::parse_net): an IPv4 or IPv6 address, or a CIDR range with its host bits zero;
// IPv4-mapped IPv6 counts as IPv4. And shown: a single address bare, a range with its prefix.
"use strict";

/** IPv4 octets; `strict` refuses leading zeros, as Rust's address parser does. */
function parseV4(s, strict) {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out = [];
  for (const p of parts) {
    if (!/^[0-9]{1,3}$/.test(p) || (strict && p.length > 1 && p[0] === "0")) return null;
    const n = Number(p);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

/** Eight 16-bit groups, or null. An IPv4 tail may stand in for the last two groups. */
function parseV6(s, strict) {
  const groups = (part, allowV4) => {
    if (part === "") return [];
    const out = [];
    const items = part.split(":");
    for (let i = 0; i < items.length; i++) {
      const g = items[i];
      if (allowV4 && i === items.length - 1 && g.includes(".")) {
        const v4 = parseV4(g, strict);
        if (!v4) return null;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(g)) {
        out.push(parseInt(g, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const halves = s.split("::");
  if (halves.length > 2) return null;
  if (halves.length === 1) {
    const all = groups(s, true);
    return all && all.length === 8 ? all : null;
  }
  const head = groups(halves[0], false);
  const tail = groups(halves[1], true);
  if (!head || !tail || head.length + tail.length > 7) return null;
  return [...head, ...new Array(8 - head.length - tail.length).fill(0), ...tail];
}

function v6Text(g) {
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    return `::ffff:${g[6] >> 8}.${g[6] & 255}.${g[7] >> 8}.${g[7] & 255}`;
  }
  // The longest run of two or more zero groups becomes "::" (RFC 5952).
  let best = { at: -1, len: 1 };
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j;
  }
  const hex = (xs) => xs.map((x) => x.toString(16)).join(":");
  if (best.at < 0) return hex(g);
  return `${hex(g.slice(0, best.at))}::${hex(g.slice(best.at + best.len))}`;
}

function truncate(bytesOrGroups, bits, width) {
  return bytesOrGroups.map((x, i) => {
    const keep = Math.max(0, Math.min(width, bits - i * width));
    const mask = keep === 0 ? 0 : ((0xffff << (width - keep)) & ((1 << width) - 1));
    return x & mask;
  });
}

/** A whitelist entry's canonical text (`10.0.0.0/8`, `2001:db8::1/128`), or an error in words. */
function checkNet(input) {
  const s = input.trim();
  const bad = { error: `${JSON.stringify(s)} is not an IP address or CIDR range` };
  if (s === "") return { error: "Enter an address or a CIDR range." };
  let family;
  let parts;
  let len;
  const slash = s.indexOf("/");
  if (slash >= 0) {
    const addr = s.slice(0, slash);
    const prefix = s.slice(slash + 1);
    if ((parts = parseV4(addr, false)) && /^[0-9]{1,2}$/.test(prefix) && Number(prefix) <= 32) {
      family = 4;
    } else if ((parts = parseV6(addr, false)) && /^[0-9]{1,3}$/.test(prefix) && Number(prefix) <= 128) {
      family = 6;
    } else {
      return bad;
    }
    len = Number(prefix);
  } else if ((parts = parseV4(s, true))) {
    family = 4;
    len = 32;
  } else if ((parts = parseV6(s, true))) {
    family = 6;
    len = 128;
  } else {
    return bad;
  }
  if (family === 6 && len >= 96 && parts.slice(0, 5).every((x) => x === 0) && parts[5] === 0xffff) {
    family = 4;
    parts = [parts[6] >> 8, parts[6] & 255, parts[7] >> 8, parts[7] & 255];
    len -= 96;
  }
  const text = (p) => (family === 4 ? `${p.join(".")}/${len}` : `${v6Text(p)}/${len}`);
  const trunc = truncate(parts, len, family === 4 ? 8 : 16);
  if (trunc.some((x, i) => x !== parts[i])) {
    return { error: `${text(parts)} has host bits set; did you mean ${text(trunc)}?` };
  }
  return { net: text(parts) };
}

/**
 * A whitelist entry as people type it: a single address without its /32 (IPv4) or /128
 * (IPv6). A range keeps its prefix: `2001:db8::/32` is a range, not the address
 * `2001:db8::`.
 */
function shownNet(net) {
  const single = net.includes(":") ? "/128" : "/32";
  return net.endsWith(single) ? net.slice(0, -single.length) : net;
}

/**
 * A whitelist entry for a narrow column: it may wrap after a colon or a dot and before
 * its prefix, never inside a group, so a long IPv6 range takes two lines, not the table's
 * width. Copying it gives the entry as shown, with no added spaces.
 */
function netNode(net, cls) {
  const text = shownNet(net);
  const parts = text.split(/(?<=[:.])|(?=\/)/);
  const children = [];
  parts.forEach((part, i) => {
    if (i > 0) children.push(el("wbr"));
    children.push(part);
  });
  return el("span", { class: cls || "net mono" }, ...children);
}

