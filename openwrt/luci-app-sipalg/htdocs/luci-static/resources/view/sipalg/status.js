'use strict';
'require view';
'require poll';
'require rpc';

// `sipalg status --json` through the rpcd plugin (/usr/libexec/rpcd/luci.sipalg).
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

// Remaining lifetimes and uptime come from the daemon's clock, not the browser's.
function duration(secs) {
	return '%t'.format(Math.max(0, Math.round(+secs || 0)));
}

function makeTable(titles) {
	return E('table', { 'class': 'table' }, [
		E('tr', { 'class': 'tr table-titles' }, titles.map(function(t) {
			return E('th', { 'class': 'th' }, t);
		}))
	]);
}

function section(title, table) {
	return E('div', { 'class': 'cbi-section' }, [ E('h3', title), table ]);
}

function list(x) {
	return Array.isArray(x) ? x : [];
}

return view.extend({
	load: function() {
		return fetchStatus();
	},

	tables: null,

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
				[ _('Uptime'), duration(st.written - st.started) ],
				[ _('WAN interface'), '%h (%h)'.format(st.wan_if, st.wan_ip || _('no address')) ],
				[ _('LAN interface'), esc(st.lan_if) ],
				[ _('Packet queue'), st.queue_backend ? '%h, %h'.format(st.queue, st.queue_backend) : esc(st.queue) ],
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

		cbi_update_table(t.registrations, list(st.registrations).map(function(r) {
			return [ esc(r.aor), esc(r.lan), esc(r.wan), duration(r.expires_in) ];
		}), none.cloneNode(true));

		cbi_update_table(t.calls, list(st.calls).map(function(c) {
			return [ esc(c.call_id), esc(c.phone), c.direction == 'out' ? _('outgoing') : _('incoming'), esc(c.state),
				esc(list(c.media).join(', ') || '-'), duration(c.expires_in) ];
		}), none.cloneNode(true));

		// signalling bindings are the phones' NAT mappings; rtp/rtcp ones are the media pinholes
		const bindings = list(st.bindings);

		cbi_update_table(t.bindings, bindings.filter(function(b) { return b.kind == 'sip'; }).map(function(b) {
			return [ esc(b.lan), esc(b.wan), duration(b.expires_in) ];
		}), none.cloneNode(true));

		cbi_update_table(t.pinholes, bindings.filter(function(b) { return b.kind != 'sip'; }).map(function(b) {
			return [ esc(String(b.kind).toUpperCase()), esc(b.lan), esc(b.wan), esc(b.remote || _('any (far end not known yet)')),
				duration(b.expires_in) ];
		}), none.cloneNode(true));
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

		this.updateTables(st);

		poll.add(L.bind(function() {
			return fetchStatus().then(L.bind(this.updateTables, this));
		}, this), 5);

		return E('div', {}, [
			E('h2', _('SIP ALG status')),
			E('div', { 'class': 'cbi-map-descr' },
				_('What the sipalg daemon holds now; refreshed every 5 seconds.')),
			section(_('Daemon'), this.tables.daemon),
			section(_('Registrations'), this.tables.registrations),
			section(_('Calls'), this.tables.calls),
			section(_('Signalling bindings'), this.tables.bindings),
			section(_('Media pinholes'), this.tables.pinholes),
			section(_('Counters'), this.tables.counters)
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
