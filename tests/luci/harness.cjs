'use strict';
/*
 * Run one luci-app-sipalg class file in jsdom, as LuCI would, and report what it did.
 *
 *   node harness.cjs VIEW.js MODE < fixture.json
 *
 * MODE: view     a page view (view.extend): loaded, rendered into #view
 *       include  a Status > Overview include (baseclass.extend): load() and render()
 *                into its section, the way luci-mod-status's status/index.js polls them
 * The fixture feeds rpc replies, uci values, networks and form values (see runtime.js);
 * `next` holds the fixture for one poll after the first render.
 *
 * The report (JSON on stdout) has the page text (table rows as "a | b | c"), and what a
 * page must never have from the wire: elements the HTML parser made (innerHTML or
 * DOMParser, not document.createElement), `on*` attributes, and window.__pwned, which a
 * test's markup sets when its handler runs (the harness fires error/load on every img).
 */
const fs = require('fs');
const path = require('path');
const { JSDOM } = require('jsdom');

const [viewPath, mode] = process.argv.slice(2);
const fixture = JSON.parse(fs.readFileSync(0, 'utf8') || '{}');

const dom = new JSDOM('<!DOCTYPE html><html><body><div id="maincontent"><div id="view"></div></div></body></html>',
	{ runScripts: 'dangerously', url: 'http://192.168.1.1/cgi-bin/luci/' });
const window = dom.window, document = window.document;

// Every element the page's own code makes goes through document.createElement; the
// HTML parser (innerHTML, DOMParser) does not.
const made = new window.WeakSet();
const createElement = document.createElement;
document.createElement = function() {
	const el = createElement.apply(this, arguments);
	made.add(el);
	return el;
};
// a clone is made the way its original was, element by element
const cloneNode = window.Node.prototype.cloneNode;
window.Node.prototype.cloneNode = function(deep) {
	const copy = cloneNode.call(this, deep);
	const from = [this], to = [copy];
	if (deep && this.querySelectorAll) {
		from.push(...this.querySelectorAll('*'));
		to.push(...copy.querySelectorAll('*'));
	}
	from.forEach((el, i) => { if (made.has(el)) made.add(to[i]); });
	return copy;
};

window.__fixture = fixture;
window.eval(fs.readFileSync(path.join(__dirname, 'runtime.js'), 'utf8'));
const L = window.L, report = window.__report;

function text(node) {
	if (node.nodeType == 3)
		return node.data;
	if (node.nodeType != 1 && node.nodeType != 11)
		return '';
	const tag = node.nodeName.toLowerCase();
	if (tag == 'td' || tag == 'th' || tag == 'option')
		return node.textContent.trim();
	const parts = Array.from(node.childNodes).map(text).filter(s => s !== '');
	return parts.join(tag == 'tr' ? ' | ' : '\n');
}

function audit(root) {
	const parsed = [], handlers = [];
	root.querySelectorAll('*').forEach(function(el) {
		if (!made.has(el))
			parsed.push(el.nodeName.toLowerCase());
		for (const a of Array.from(el.attributes))
			if (/^on/i.test(a.name))
				handlers.push(el.nodeName.toLowerCase() + '[' + a.name + ']');
	});
	// what a browser would do with <img src=x onerror=...>: fail to load it
	root.querySelectorAll('img, iframe, object, embed, video, audio, svg').forEach(function(el) {
		el.dispatchEvent(new window.Event('error'));
		el.dispatchEvent(new window.Event('load'));
	});
	return { parsed: parsed, handlers: handlers };
}

function snapshot(root, prefix) {
	const a = audit(root);
	out[prefix + 'text'] = text(root);
	out[prefix + 'html'] = root.innerHTML;
	out[prefix + 'parsed'] = a.parsed;
	out[prefix + 'handlers'] = a.handlers;
}

const out = {};

async function settle(promise) {
	await promise;
	for (let i = 0; i < 5; i++)
		await new Promise(r => window.setTimeout(r, 0));
}

(async function() {
	const source = fs.readFileSync(viewPath, 'utf8');
	const name = path.relative(path.join(__dirname, '..', '..'), viewPath);
	let root;

	if (mode == 'view') {
		const instance = L.compileClass(name, source);
		await settle(instance.__done);
		root = document.getElementById('view');
		snapshot(root, '');
	}
	else if (mode == 'include') {
		const include = L.compileClass(name, source);
		const sect = L.overviewSection(include);
		root = document.getElementById('view');
		await settle(sect.step());
		out.title = include.title;
		out.shown = sect.node.style.display != 'none';
		snapshot(root, '');
		report.__step = sect.step;
	}
	else {
		throw new Error('mode must be view or include');
	}

	if (fixture.next) {
		for (const k of Object.keys(fixture.next))
			fixture[k] = fixture.next[k];
		for (const k of [ 'rpc', 'rpc_status', 'rpc_errors' ])
			if (!(k in fixture.next))
				delete fixture[k];
		if (mode == 'include')
			await settle(report.__step());
		else
			await settle(Promise.all(window.__pollFns.map(fn => fn())));   // one poll tick
		if (mode == 'include')
			out.next_shown = root.firstElementChild.style.display != 'none';
		snapshot(root, 'next_');
	}

	out.rpc = report.rpc;
	out.polls = report.polls;
	out.uci = report.uci;
	out.errors = report.errors;
	out.pwned = window.__pwned === undefined ? null : String(window.__pwned);

	const maps = report.maps || [];
	if (maps.length) {
		const map = maps[0];
		out.config = map.config;
		out.tabbed = !!map.tabbed;
		out.sections = map.sections.map(s => ({
			name: s.name, type: s.type, title: s.title,
			options: s.options.map(o => ({ name: o.option, cls: o.cls, choices: o.choices.map(c => c[0]),
			                               datatype: o.datatype || null, validates: typeof o.validate == 'function' })) }));
		out.validations = (fixture.validate || []).map(function(c) {
			const s = map.sections.find(s => s.name == c.section);
			const o = s.options.find(o => o.option == c.option);
			return o.validate.call(o, c.section, c.value);
		});
	}

	process.stdout.write(JSON.stringify(out));
	window.close();
})().catch(e => { console.error(e && e.stack || e); process.exit(1); });
