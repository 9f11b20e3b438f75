'use strict';
'require view';
'require poll';
'require rpc';

// The daemon's status.json through the rpcd plugin (/usr/libexec/rpcd/luci.sipalg), which
// adds `running` and the router's clock `now`.
const callStatus = rpc.declare({
	object: 'luci.sipalg',
	method: 'status',
	expect: { '': {} }
});

// The plugin answers {running: false, error} itself when no daemon runs; a
// failed call is shown the same way.  rpc.js resolves a ubus error status (no such
// object: plugin missing or rpcd not restarted) to `expect`'s {} and rejects on a
// JSON-RPC error (no permission).
function fetchStatus() {
	return callStatus().then(function(st) {
		if (typeof(st.running) != 'boolean')
			return { running: false, error: _('No answer from the rpcd plugin luci.sipalg (is rpcd restarted since luci-app-sipalg was installed?)') };

		return st;
	}, function(err) {
		return { running: false, error: (err && err.message) ? err.message : String(err) };
	});
}

// Every string from the status JSON reaches the page HTML-escaped: the Call-ID, AOR
// and addresses come off the wire, and LuCI's E()/dom.append (and so every table
// cell) set innerHTML for a string.  Numbers, null and objects become '' or digits.
function esc(v) {
	return '%h'.format(v);
}

// Remaining lifetimes and uptime are read against the router's clock (st.now), not the
// browser's: the status holds absolute times, so it changes only when something happens.
function duration(secs) {
	return '%t'.format(Math.max(0, Math.round(+secs || 0)));
}

function left(st, x) {
	return duration(x.expires - st.now);
}

// The status lists the first entries of each table beside the total (it stays small with
// thousands of phones): say so under a table that shows fewer than there are.
function shownOf(shown, total) {
	return (+total > shown) ? _('The first %d of %d are shown.').format(shown, +total) : '';
}

function makeTable(titles) {
	return E('table', { 'class': 'table' }, [
		E('tr', { 'class': 'tr table-titles' }, titles.map(function(t) {
			return E('th', { 'class': 'th' }, t);
		}))
	]);
}

function section(title, table, note) {
	return E('div', { 'class': 'cbi-section' }, [ E('h3', title), table ].concat(note ? [ note ] : []));
}

function list(x) {
	return Array.isArray(x) ? x : [];
}

// The kernel's own SIP helper (nf_conntrack_sip): present when loaded or built in (what fw4
// calls available), attached when a rule sets it (which would rewrite SIP a second time).
function kernelHelper(kh) {
	if (!kh || typeof(kh) != 'object')
		return _('unknown');
	if (list(kh.attached).length)
		return E('strong', { 'style': 'color:red' },
			_('attached by %s').format(list(kh.attached).map(esc).join(', ')));
	if (!kh.present)
		return _('not on this router');
	return kh.builtin ? _('built into the kernel, not attached') : _('loaded, not attached');
}

return view.extend({
	load: function() {
		return fetchStatus();
	},

	tables: null,
	notes: null,

	updateTables: function(st) {
		const t = this.tables, up = st.running === true;
		const none = E('em', up ? _('None') : _('sipalg is not running'));
		let rows;

		rows = [ [ _('State'), up
			? E('strong', { 'style': 'color:green' }, _('Running'))
			: E('strong', { 'style': 'color:red' }, _('Not running')) ] ];

		if (!up) {
			rows.push([ _('Reason'), esc(st.error || _('unknown')) ]);
		}
		else {
			const leds = Object.keys(st.leds || {}).sort().map(function(role) {
				return '%h: %h'.format(role, st.leds[role]);
			});

			rows.push(
				[ _('PID'), esc(st.pid) ],
				[ _('Uptime'), duration(st.now - st.started) ],
				[ _('WAN interface'), '%h (%h)'.format(st.wan_if, st.wan_ip || _('no address')) ],
				[ _('LAN interface'), esc(st.lan_if) ],
				[ _('Packet queue'), st.queue_backend ? '%h, %h'.format(st.queue, st.queue_backend) : esc(st.queue) ],
				[ _('Kernel SIP helper'), kernelHelper(st.kernel_helper) ],
				[ _('LEDs'), leds.length ? leds.join(', ') : _('none') ]
			);
		}

		cbi_update_table(t.daemon, rows);

		const counters = Object.assign({}, st.counters);
		Object.keys(st.queue_counters || {}).forEach(function(k) {
			counters['queue ' + k] = st.queue_counters[k];
		});
		cbi_update_table(t.counters, Object.keys(counters).sort().map(function(k) {
			return [ esc(k), esc(counters[k]) ];
		}), none.cloneNode(true));

		const totals = st.totals || {}, regs = list(st.registrations), calls = list(st.calls);

		cbi_update_table(t.registrations, regs.map(function(r) {
			return [ esc(r.aor), esc(r.lan), esc(r.wan), left(st, r) ];
		}), none.cloneNode(true));

		cbi_update_table(t.calls, calls.map(function(c) {
			return [ esc(c.call_id), esc(c.phone), c.direction == 'out' ? _('outgoing') : _('incoming'), esc(c.state),
				esc(list(c.media).join(', ') || '-'), left(st, c) ];
		}), none.cloneNode(true));

		// signalling bindings are the phones' NAT mappings; rtp/rtcp ones are the media pinholes
		const bindings = list(st.bindings);
		const sip = bindings.filter(function(b) { return b.kind == 'sip'; });
		const media = bindings.filter(function(b) { return b.kind != 'sip'; });

		cbi_update_table(t.bindings, sip.map(function(b) {
			return [ esc(b.lan), esc(b.wan), left(st, b) ];
		}), none.cloneNode(true));

		cbi_update_table(t.pinholes, media.map(function(b) {
			return [ esc(String(b.kind).toUpperCase()), esc(b.lan), esc(b.wan), esc(b.remote || _('any (far end not known yet)')),
				left(st, b) ];
		}), none.cloneNode(true));

		// textContent: the note is text whatever it holds
		this.notes.registrations.textContent = up ? shownOf(regs.length, totals.registrations) : '';
		this.notes.calls.textContent = up ? shownOf(calls.length, totals.calls) : '';
		this.notes.bindings.textContent = up ? shownOf(sip.length, totals.bindings) : '';
		this.notes.pinholes.textContent = up ? shownOf(media.length, totals.pinholes) : '';
	},

	render: function(st) {
		this.tables = {
			daemon: makeTable([ _('Daemon'), '' ]),
			counters: makeTable([ _('Counter'), _('Value') ]),
			registrations: makeTable([ _('Address of record'), _('Phone'), _('WAN mapping'), _('Expires in') ]),
			calls: makeTable([ _('Call-ID'), _('Phone'), _('Direction'), _('State'), _('Media'), _('Expires in') ]),
			bindings: makeTable([ _('LAN'), _('WAN'), _('Expires in') ]),
			pinholes: makeTable([ _('Kind'), _('LAN'), _('WAN'), _('Remote'), _('Expires in') ])
		};

		this.notes = {};
		[ 'registrations', 'calls', 'bindings', 'pinholes' ].forEach(L.bind(function(k) {
			this.notes[k] = E('div', { 'class': 'cbi-section-descr' });
		}, this));

		this.updateTables(st);

		poll.add(L.bind(function() {
			return fetchStatus().then(L.bind(this.updateTables, this));
		}, this), 5);

		return E('div', {}, [
			E('h2', _('SIP ALG status')),
			E('div', { 'class': 'cbi-map-descr' },
				_('What the sipalg daemon holds now; refreshed every 5 seconds.')),
			section(_('Daemon'), this.tables.daemon),
			section(_('Registrations'), this.tables.registrations, this.notes.registrations),
			section(_('Calls'), this.tables.calls, this.notes.calls),
			section(_('Signalling bindings'), this.tables.bindings, this.notes.bindings),
			section(_('Media pinholes'), this.tables.pinholes, this.notes.pinholes),
			section(_('Counters'), this.tables.counters)
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
