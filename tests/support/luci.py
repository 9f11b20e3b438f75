"""luci-app-sipalg under test: its files, its views rendered under node with stand-ins for
LuCI's modules (form, rpc, poll, network, E(), cbi_update_table), and its rpcd plugin run as
rpcd runs it.  Used by tests/test_luci.py and the lab's end-to-end status test."""
import json
import os
import subprocess
import sys

from tests.support import ROOT
from tests.support.need import need_tools

APP = os.path.join(ROOT, "openwrt", "luci-app-sipalg")
VIEWS = os.path.join(APP, "htdocs", "luci-static", "resources", "view")
SETTINGS_JS = os.path.join(VIEWS, "sipalg", "settings.js")
STATUS_JS = os.path.join(VIEWS, "sipalg", "status.js")
PLUGIN = os.path.join(APP, "root", "usr", "libexec", "rpcd", "luci.sipalg")


# ---------------------------------------------------------------- node harness

HARNESS = r"""
'use strict';
const fs = require('fs');
const [viewPath, mode] = process.argv.slice(2);
const input = JSON.parse(fs.readFileSync(0, 'utf8') || '{}');
const out = { rpc: [], polls: [] };

// ---- a small DOM: enough for E(), cloneNode and text
class Elem {
	constructor(tag, attrs) { this.tag = tag; this.attrs = attrs || {}; this.children = []; this.rows = null; }
	appendChild(c) { this.children.push(c); return c; }
	cloneNode() {
		const n = new Elem(this.tag, Object.assign({}, this.attrs));
		n.children = this.children.map(c => (c instanceof Elem) ? c.cloneNode() : c);
		return n;
	}
}
function flatten(x, acc) {
	if (Array.isArray(x)) x.forEach(y => flatten(y, acc));
	else if (x != null && x !== false) acc.push(x);
	return acc;
}
function E(tag, attrs, children) {
	if (Array.isArray(attrs) || typeof attrs == 'string' || attrs instanceof Elem) { children = attrs; attrs = {}; }
	const n = new Elem(tag, attrs);
	n.children = flatten(children, []);
	return n;
}
function text(n) {
	if (!(n instanceof Elem)) return String(n);
	if (n.rows) {
		const head = n.children.map(text).join('\n');
		const body = n.rows.length ? n.rows.map(r => r.map(text).join(' | ')).join('\n') : text(n.placeholder || '');
		return head + '\n' + body;
	}
	return n.children.map(text).join(n.tag == 'tr' ? ' | ' : '\n');
}
globalThis.E = E;
globalThis._ = s => s;
globalThis.cbi_update_table = function(table, rows, placeholder) {
	table.rows = rows;
	table.placeholder = placeholder;
};
String.prototype.format = function() {
	const args = Array.from(arguments);
	return this.replace(/%([-0-9.]*)([sdhtf%])/g, function(m, w, t) {
		if (t == '%') return '%';
		const a = args.shift();
		if (t == 't') {
			let s = +a, d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), mi = Math.floor(s % 3600 / 60);
			return (d ? d + 'd ' : '') + h + 'h ' + mi + 'm ' + (s % 60) + 's';
		}
		return t == 'd' ? String(Math.floor(+a)) : String(a);
	});
};
globalThis.L = {
	bind: (fn, self, ...a) => fn.bind(self, ...a),
	resolveDefault: (p, d) => Promise.resolve(p).catch(() => d),
	toArray: x => x == null ? [] : (Array.isArray(x) ? x : [x]),
};

// ---- LuCI modules
const rpc = {
	declare(opts) {
		out.rpc.push([opts.object, opts.method]);
		return function() {
			const key = opts.object + '.' + opts.method;
			if (input.rpc_errors && input.rpc_errors[key]) return Promise.reject(new Error(input.rpc_errors[key]));
			// rpc.js's `expect`: the named member of the reply, or its default when absent
			let ret = input.rpc ? input.rpc[key] : undefined;
			for (const k in (opts.expect || {})) {
				if (k != '' && ret != null && typeof ret == 'object') ret = ret[k];
				if (ret == null) ret = opts.expect[k];
				break;
			}
			return Promise.resolve(ret);
		};
	}
};
const pollFns = [];
const poll = { add(fn, interval) { pollFns.push(fn); out.polls.push(interval); } };
const view = { extend: o => o };

class Option {
	constructor(section, cls, name, title) {
		Object.assign(this, { section, cls: cls.__name__, option: name, title, choices: [], deps: [] });
	}
	value(k) { this.choices.push(k); }
	depends(k, v) { this.deps.push([k, v]); }
}
class Section {
	constructor(map, cls, name, type, title) {
		Object.assign(this, { map, cls: cls.__name__, name, type, title, options: [], tabs: [] });
	}
	tab(name, title) { this.tabs.push(name); }
	option(cls, name, title) { const o = new Option(this, cls, name, title); this.options.push(o); return o; }
	taboption(tab, cls, name, title) { return this.option(cls, name, title); }
	formvalue(section_id, name) { return (input.formvalues || {})[name]; }
}
const form = {
	Map: class {
		constructor(config, title) { this.config = config; this.title = title; this.sections = []; }
		section(cls, name, type, title) {
			const s = new Section(this, cls, name, type, title);
			this.sections.push(s);
			return s;
		}
		render() { return Promise.resolve(this); }
	},
};
for (const c of ['NamedSection', 'TypedSection', 'GridSection', 'Flag', 'Value', 'ListValue', 'DynamicList',
		 'DummyValue', 'MultiValue'])
	form[c] = { __name__: c };

const network = {
	getNetworks() {
		return Promise.resolve((input.networks || []).map(n => ({
			getName: () => n.name,
			getL3Device: () => n.device ? { getName: () => n.device } : null,
			getDevice: () => n.device ? { getName: () => n.device } : null,
		})));
	}
};
const modules = { view, form, rpc, poll, network };

// ---- LuCI's loader: 'require x [as y]' lines become the function's parameters
const src = fs.readFileSync(viewPath, 'utf8');
const names = [], values = [];
for (const m of src.matchAll(/^\s*'require ([\w.]+)(?: as (\w+))?';/mg)) {
	const name = m[2] || m[1].replace(/.*\./, '');
	if (!(m[1] in modules)) throw new Error('no stand-in for module ' + m[1]);
	names.push(name); values.push(modules[m[1]]);
}
const v = new Function(...names, src)(...values);

(async function() {
	const data = await v.load();
	const rendered = await v.render(data);
	if (mode == 'settings') {
		const map = rendered;
		out.config = map.config;
		out.tabbed = !!map.tabbed;
		out.sections = map.sections.map(s => ({
			name: s.name, type: s.type, title: s.title,
			options: s.options.map(o => ({ name: o.option, cls: o.cls, choices: o.choices, datatype: o.datatype || null,
			                              validates: typeof o.validate == 'function' })) }));
		out.validations = (input.validate || []).map(function(c) {
			const s = map.sections.find(s => s.name == c.section);
			const o = s.options.find(o => o.option == c.option);
			return o.validate.call(o, c.section, c.value);
		});
	}
	else {
		out.text = text(rendered);
		if (input.next) {
			input.rpc = input.next.rpc;
			input.rpc_errors = input.next.rpc_errors;
			await pollFns[0]();
			out.next_text = text(rendered);
		}
	}
	process.stdout.write(JSON.stringify(out));
})().catch(e => { console.error(e && e.stack || e); process.exit(1); });
"""


def run_view(tmp_path, view, mode, data=None):
    """Load and render a view under node; the harness's JSON report."""
    need_tools("node")
    harness = tmp_path / "harness.cjs"
    harness.write_text(HARNESS)
    r = subprocess.run(["node", str(harness), view, mode], input=json.dumps(data or {}).encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout)


def sipalg_command(tmp_path):
    """A stand-in for /usr/sbin/sipalg that runs this checkout's alg package."""
    cmd = tmp_path / "sipalg"
    cmd.write_text('#!/bin/sh\nPYTHONPATH="%s" exec "%s" -m alg "$@"\n' % (ROOT, sys.executable))
    cmd.chmod(0o755)
    return str(cmd)


def run_plugin(*args, env=None):
    e = dict(os.environ, **(env or {}))
    r = subprocess.run([PLUGIN] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=e, timeout=60)
    return r.returncode, r.stdout.decode(), r.stderr.decode()
