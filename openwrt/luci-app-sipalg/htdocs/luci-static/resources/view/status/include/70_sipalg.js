'use strict';
'require baseclass';
'require rpc';
'require uci';

// Status > Overview: the SIP ALG's registrations and calls, from the same rpcd plugin
// as the status page (/usr/libexec/rpcd/luci.sipalg), refreshed with the overview.
const callStatus = rpc.declare({
	object: 'luci.sipalg',
	method: 'status',
	expect: { '': {} }
});

// AORs, Call-IDs and addresses come off the wire: escaped before any E() or table cell.
function esc(v) {
	return '%h'.format(v);
}

function list(x) {
	return Array.isArray(x) ? x : [];
}

return baseclass.extend({
	title: _('SIP ALG'),

	load: function() {
		return Promise.all([
			callStatus().catch(function(err) {
				return { running: false, error: (err && err.message) ? err.message : String(err) };
			}),
			L.resolveDefault(uci.load('sipalg'), null)
		]);
	},

	render: function(data) {
		const st = data[0] || {}, enabled = uci.get('sipalg', 'main', 'enabled') == '1';

		// nothing to say about an ALG the owner left off: the overview keeps the section hidden
		if (st.running !== true && !enabled)
			return null;

		const table = E('table', { 'class': 'table' });

		if (st.running !== true) {
			table.appendChild(E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td left', 'width': '33%' }, _('State')),
				E('td', { 'class': 'td left' }, [
					E('strong', { 'style': 'color:red' }, _('Not running')), ': ',
					st.error ? String(st.error) : _('no answer from the rpcd plugin luci.sipalg')
				])
			]));

			return table;
		}

		// the lists hold the first entries only; the counts come from the totals beside them
		const regs = list(st.registrations), calls = list(st.calls), totals = st.totals || {};
		const nregs = +totals.registrations || 0, ncalls = +totals.calls || 0, ringing = +totals.calls_early || 0;

		[
			[ _('Registered phones'), '%d'.format(nregs) ],
			[ _('Calls'), ringing ? _('%d (%d being set up)').format(ncalls, ringing) : '%d'.format(ncalls) ],
			[ _('WAN address'), '%h (%h)'.format(st.wan_ip || _('none'), st.wan_if) ]
		].forEach(function(row) {
			table.appendChild(E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td left', 'width': '33%' }, row[0]),
				E('td', { 'class': 'td left' }, row[1])
			]));
		});

		if (!regs.length)
			return table;

		const phones = E('table', { 'class': 'table' }, [
			E('tr', { 'class': 'tr table-titles' }, [
				E('th', { 'class': 'th' }, _('Address of record')),
				E('th', { 'class': 'th' }, _('Phone')),
				E('th', { 'class': 'th' }, _('In call'))
			])
		]);

		cbi_update_table(phones, regs.map(function(r) {
			const lan_ip = String(r.lan || '').replace(/:\d+$/, '');
			const busy = calls.some(function(c) { return c.phone == lan_ip; });

			return [ esc(r.aor), esc(r.lan), busy ? _('yes') : _('no') ];
		}));

		return E([ table, phones ]);
	}
});
