'use strict';
'require view';
'require form';
'require rpc';
'require network';

// LED names for the LEDs tab: luci-base's own call, as System > LED Configuration uses.
const callLeds = rpc.declare({
	object: 'luci',
	method: 'getLEDs',
	expect: { '': {} }
});

// 'LO-HI' with 1024 <= LO < HI <= 65535 and room for a call: what the daemon's
// option table (alg/options.py, rtp_ports) accepts, so Save never stops the daemon.
function validatePortRange(section_id, value) {
	const m = /^(\d+)-(\d+)$/.exec(value || '');

	if (!m)
		return _('Expecting a port range LO-HI, e.g. 10000-20000');

	const lo = +m[1], hi = +m[2];

	if (lo < 1024 || hi > 65535)
		return _('Ports must be between 1024 and 65535');

	if (lo > hi)
		return _('The first port must not be greater than the last');

	if (hi - lo + 1 < 4)
		return _('The range must hold at least 4 ports (one call\'s RTP and RTCP)');

	return true;
}

// Offer the logical interfaces but accept a device name too (the daemon takes
// either): a Value with choices, where NetworkSelect would drop a device name.
function addInterfaceChoices(o, networks, other) {
	networks.forEach(function(net) {
		const dev = net.getL3Device() || net.getDevice();

		if (net.getName() != 'loopback')
			o.value(net.getName(), dev ? '%s (%s)'.format(net.getName(), dev.getName()) : net.getName());
	});

	o.datatype = 'or(uciname,netdevname)';
	o.rmempty = false;
	o.validate = function(section_id, value) {
		// lan_if is a list (a VoIP VLAN beside br-lan): WAN must be none of them
		const others = L.toArray(this.section.formvalue(section_id, other));

		if (value && others.indexOf(value) >= 0)
			return _('WAN and LAN must be different interfaces');

		return true;
	};
}

const LED_ROLES = [ 'registered', 'call', 'error' ];

// LED choices: probed, or one of the board's LEDs; a typed name is kept as is
// and an empty one (the combobox's "unspecified") means the role has no LED.
function addLedChoices(o, leds) {
	o.value('auto', _('auto (probe the board)'));
	Object.keys(leds).sort().forEach(function(led) { o.value(led); });
	o.depends('enabled', '1');
	o.retain = true;
	// the daemon refuses to start on a bad name or one LED given twice: catch both here
	o.validate = function(section_id, value) {
		if (!value || value == 'auto')
			return true;

		if (value.indexOf('/') >= 0 || value == '.' || value == '..')
			return _('Expecting an LED name (a directory in /sys/class/leds)');

		for (let i = 0; i < LED_ROLES.length; i++)
			if (LED_ROLES[i] != this.option && this.section.formvalue(section_id, LED_ROLES[i]) == value)
				return _('This LED is already used for another role');

		return true;
	};
}

return view.extend({
	load: function() {
		return Promise.all([
			L.resolveDefault(network.getNetworks(), []),
			L.resolveDefault(callLeds(), {})
		]);
	},

	render: function(data) {
		const networks = data[0], leds = data[1];
		let m, s, o;

		m = new form.Map('sipalg', _('SIP ALG'),
			_('Rewrites SIP and SDP for phones behind this router\'s NAT, keeps their registrations reachable ' +
			  'and opens RTP pinholes only for the calls it sees. Saving reloads the daemon; calls in progress continue.'));
		m.tabbed = true;    // one tab per section: General, LEDs

		s = m.section(form.NamedSection, 'main', 'sipalg', _('General'));
		s.addremove = false;

		o = s.option(form.Flag, 'enabled', _('Enable'),
			_('Run the SIP ALG. When off, SIP passes the NAT untouched.'));
		o.rmempty = false;

		o = s.option(form.Value, 'wan_if', _('WAN interface'),
			_('The interface facing the SIP server: a logical interface such as <code>wan</code>, or a device name.'));
		addInterfaceChoices(o, networks, 'lan_if');

		o = s.option(form.DynamicList, 'lan_if', _('LAN interfaces'),
			_('The interfaces facing the phones: the LAN, and a VoIP VLAN beside it if there is one.'));
		addInterfaceChoices(o, networks, 'wan_if');

		o = s.option(form.DynamicList, 'exclude', _('Leave alone'),
			_('LAN hosts or networks the SIP ALG does not touch, e.g. a PBX that does its own NAT traversal: ' +
			  'their SIP passes the NAT as it came.'));
		o.datatype = 'or(ip4addr,cidr4)';

		o = s.option(form.DynamicList, 'sip_port', _('SIP ports'),
			_('UDP ports that carry SIP (usually 5060).'));
		o.datatype = 'and(port,min(1))';
		o.placeholder = '5060';

		o = s.option(form.Value, 'rtp_ports', _('RTP port range'),
			_('Ports the phones may use for RTP/RTCP, as LO-HI. Media is only ever opened inside this range, ' +
			  'which keeps a LAN host from getting, say, its port 22 opened; the default suits every phone brand.'));
		o.placeholder = '1024-65535';
		o.validate = validatePortRange;

		o = s.option(form.ListValue, 'answer_keepalives', _('Answer keep-alives'),
			_('<strong>off</strong>: keep-alives pass through to the phone untouched.<br />' +
			  '<strong>crlf</strong> (recommended): the router answers CRLF pings for the phone and absorbs NUL probes; ' +
			  'the binding stays open and the phone is not woken.<br />' +
			  '<strong>options</strong>: as crlf, and the router also answers the server\'s OPTIONS to a registered phone. ' +
			  'The server then tests the router, not the phone: an unplugged phone looks reachable until its ' +
			  'registration expires, so calls may go to it instead of to voicemail. Use it only when the server\'s ' +
			  'OPTIONS pings wake phones too often or drain battery-powered devices.'));
		o.value('off', _('off'));
		o.value('crlf', _('crlf'));
		o.value('options', _('options'));
		o.default = 'crlf';

		o = s.option(form.ListValue, 'log_level', _('Log level'),
			_('<strong>info</strong> logs one line per registration, call and refusal, <strong>debug</strong> every rewrite.'));
		o.value('debug', _('debug'));
		o.value('info', _('info'));
		o.value('warning', _('warning'));
		o.value('error', _('error'));
		o.default = 'info';

		o = s.option(form.Value, 'queue_num', _('NFQUEUE number'),
			_('The netfilter queue SIP is handed over on; it must be one no other program uses (etherwake-nfqueue takes 0).'));
		o.datatype = 'range(0,65535)';
		o.placeholder = '5060';

		o = s.option(form.ListValue, 'inbound_sip', _('Incoming SIP from'),
			_('<strong>peers</strong> (recommended): a registered phone can be reached only by the servers it sent SIP to ' +
			  '(its registrar and proxies) and the hosts listed below, as the kernel\'s own SIP helper does; SIP scanners ' +
			  'never ring it. <strong>any</strong>: by any internet host.'));
		o.value('peers', _('peers'));
		o.value('any', _('any'));
		o.default = 'peers';

		o = s.option(form.DynamicList, 'sip_peer', _('Trusted SIP hosts'),
			_('Addresses or networks that may always send SIP to the phones, e.g. a provider\'s second proxy.'));
		o.datatype = 'ip4addr';
		o.depends('inbound_sip', 'peers');

		o = s.option(form.Value, 'wan_sip_rate', _('SIP rate per internet host'),
			_('SIP datagrams a second one internet host may send to the phones before the rest pass the router ' +
			  'as plain NAT, never reaching the ALG: a flood can\'t slow it down. 0 means no limit.'));
		o.datatype = 'range(0,1000000)';
		o.placeholder = '200';

		o = s.option(form.Value, 'lan_sip_rate', _('SIP rate per LAN device'),
			_('SIP datagrams a second one LAN device may send before the rest pass the router unrewritten, ' +
			  'as plain NAT: one flooding device can\'t starve the other phones. 0 means no limit.'));
		o.datatype = 'range(0,1000000)';
		o.placeholder = '500';

		o = s.option(form.ListValue, 'media_from', _('Media from'),
			_('<strong>sdp</strong> (recommended): a call\'s media pinhole admits only the far end its SDP names ' +
			  '(or its server when that address is private). <strong>any</strong>: anyone until the far end\'s SDP ' +
			  'arrives, for providers whose media comes from elsewhere.'));
		o.value('sdp', _('sdp'));
		o.value('any', _('any'));
		o.default = 'sdp';

		o = s.option(form.Flag, 'disable_kernel_helper', _('Disable the kernel SIP helper'),
			_('Keep the kernel\'s own SIP helper (nf_conntrack_sip) from rewriting the same packets too.'));
		o.default = '1';
		o.rmempty = false;

		s = m.section(form.NamedSection, 'leds', 'leds', _('LEDs'),
			_('Show on the board\'s LEDs whether phones are registered, whether a call is up (blinking while it ' +
			  'rings) and whether the ALG is in trouble. Leave a role unspecified to use no LED for it. ' +
			  'The LEDs are taken over only while the daemon runs.'));
		s.addremove = false;

		o = s.option(form.Flag, 'enabled', _('Enable status LEDs'));
		o.rmempty = false;

		o = s.option(form.Value, 'registered', _('Registered LED'),
			_('On while at least one phone is registered.'));
		addLedChoices(o, leds);

		o = s.option(form.Value, 'call', _('Call LED'),
			_('On during a call, blinking while one is being set up.'));
		addLedChoices(o, leds);

		o = s.option(form.Value, 'error', _('Error LED'),
			_('On when the daemon failed to update the firewall lately.'));
		addLedChoices(o, leds);

		return m.render();
	}
});
