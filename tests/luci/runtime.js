/*
 * The parts of LuCI's client runtime that luci-app-sipalg's views touch, rewritten
 * for tests from what luci-base does (luci.js: Class, dom.*, E(), the class loader;
 * cbi.js: String.prototype.format, cbi_update_table; ui.js: ui.Table.update; rpc.js:
 * `expect`), and evaluated inside a jsdom window so that `instanceof Object`, the
 * HTML parser and innerHTML behave as in a browser.  The string handling is the point:
 *
 *   dom.append(node, 'string')   -> node.innerHTML = string       (markup is parsed)
 *   dom.append(node, [ 'string'])-> a text node                   (shown as text)
 *   E(tag, attrs, 'string')      -> dom.append                     (innerHTML)
 *   ui.Table.update(rows)        -> E('td', {...}, cell)            (innerHTML for strings)
 *   '%h'.format(s)               -> & " ' < > as numeric entities
 *
 * Form, network and uci are small stand-ins (not LuCI's widgets); everything a test
 * feeds in comes from window.__fixture and everything it reads goes to window.__report.
 */
(function(window, document) {
	'use strict';

	var fixture = window.__fixture || {};
	var report = window.__report = { rpc: [], polls: [], errors: [], uci: [] };

	/* ---------------------------------------------------------- cbi.js: format */

	var HTML_ESC = [ [ /&/g, '&#38;' ], [ /"/g, '&#34;' ], [ /'/g, '&#39;' ], [ /</g, '&#60;' ], [ />/g, '&#62;' ] ];
	var QUOT_ESC = [ [ /"/g, '&#34;' ], [ /'/g, '&#39;' ] ];

	function escape(v, table) {
		var t = typeof(v);

		if (v == null || t === 'object' || t === 'function')
			return '';

		var s = (t === 'string') ? v : String(v);

		for (var i = 0; i < table.length; i++)
			s = s.replace(table[i][0], table[i][1]);

		return s;
	}

	function intOf(v) { return Math.floor(+v || 0); }

	// %[pad][-][min][.prec]type, consumed left to right; an argument list that runs
	// out leaves the previous substitution in place, as LuCI's loop does.
	var FMT = /^(([^%]*)%('.|0|\x20)?(-)?(\d+)?(\.\d+)?(%|b|c|d|u|f|o|s|x|X|q|h|j|t|m))/;

	String.prototype.format = function() {
		var str = this, out = '', args = arguments, used = 0, subst, m;

		while ((m = FMT.exec(str)) !== null) {
			var left = m[2], padSpec = m[3], justify = m[4], minLen = m[5], prec = m[6], type = m[7];

			if (type == '%') {
				subst = '%';
			}
			else if (used < args.length) {
				var p = args[used++];
				var pad = padSpec ? ((padSpec.charAt(0) == "'") ? padSpec.charAt(1) : padSpec) : ' ';

				switch (type) {
				case 'b': subst = intOf(p).toString(2); break;
				case 'c': subst = String.fromCharCode(+p || 0); break;
				case 'd': subst = intOf(p).toFixed(0); break;
				case 'u': var n = +p || 0; subst = Math.floor(n < 0 ? 0x100000000 + n : n).toFixed(0); break;
				case 'f': subst = prec ? (+p || 0).toFixed(+prec.substring(1)) : (+p || 0); break;
				case 'o': subst = intOf(p).toString(8); break;
				case 's': subst = p; break;
				case 'x': subst = intOf(p).toString(16).toLowerCase(); break;
				case 'X': subst = intOf(p).toString(16).toUpperCase(); break;
				case 'h': subst = escape(p, HTML_ESC); break;
				case 'q': subst = escape(p, QUOT_ESC); break;
				case 't':
					var s = (p || 0), mi = 0, h = 0, d = 0;
					if (s > 59) { mi = Math.floor(s / 60); s = s % 60; }
					if (mi > 59) { h = Math.floor(mi / 60); mi = mi % 60; }
					if (h > 23) { d = Math.floor(h / 24); h = h % 24; }
					subst = d > 0 ? String.format('%dd %dh %dm %ds', d, h, mi, s)
					              : String.format('%dh %dm %ds', h, mi, s);
					break;
				case 'm':
					var base = minLen ? +minLen : 1000, digits = prec ? ~~(10 * +('0' + prec)) : 2;
					var val = +p || 0, units = [ ' ', ' K', ' M', ' G', ' T', ' P', ' E' ], i = 0;
					for (; i < units.length && val > base; i++)
						val /= base;
					subst = i ? val.toFixed(digits) + units[i] + (base == 1024 ? 'i' : '') : val + ' ';
					minLen = null;
					break;
				}

				if (minLen) {
					subst = subst.toString();
					while (subst.length < minLen)
						subst = (justify == '-') ? subst + ' ' : pad + subst;
				}
			}

			out += left + subst;
			str = str.substr(m[1].length);
		}

		return out + str;
	};

	String.format = function(fmt) {
		return ''.format.apply(fmt, Array.prototype.slice.call(arguments, 1));
	};

	window._ = function(s) { return s; };
	window.N_ = function(n, s, p) { return n != 1 ? p : s; };

	/* ---------------------------------------------------------- luci.js: Class */

	function toCamelCase(s) {
		return s.replace(/(?:^|[\. -])(.)/g, function(m0, m1) { return m1.toUpperCase(); });
	}

	var superContext = null, Class = Object.assign(function() {}, {
		extend: function(properties) {
			var props = { __base__: { value: this.prototype }, __name__: { value: properties.__name__ || 'anonymous' } };
			var Ctor = function() {
				if (!(this instanceof Ctor))
					throw new TypeError('Constructor must not be called without "new"');
				if (Object.getPrototypeOf(this).hasOwnProperty('__init__')) {
					if (typeof(this.__init__) != 'function')
						throw new TypeError('Class __init__ member is not a function');
					this.__init__.apply(this, arguments);
				}
				else {
					this.super('__init__', arguments);
				}
			};

			for (var key in properties)
				if (!props[key] && properties.hasOwnProperty(key))
					props[key] = { value: properties[key], writable: true };

			Ctor.prototype = Object.create(this.prototype, props);
			Ctor.prototype.constructor = Ctor;
			Object.assign(Ctor, this);
			Ctor.displayName = toCamelCase(props.__name__.value + 'Class');
			return Ctor;
		},
		singleton: function(properties) {
			return Class.extend(properties).instantiate(Array.prototype.slice.call(arguments, 1));
		},
		instantiate: function(args) {
			return new (Function.prototype.bind.apply(this, [ null ].concat(args)))();
		},
		isSubclass: function(c) {
			return c != null && typeof(c) == 'function' && c.prototype instanceof this;
		},
		prototype: {
			varargs: function(args, offset) {
				return Array.prototype.slice.call(arguments, 2).concat(Array.prototype.slice.call(args, offset));
			},
			// the nearest prototype above the current one that has `key` (LuCI keeps one
			// context pointer, enough for the constructor chain the views use)
			super: function(key, callArgs) {
				for (superContext = Object.getPrototypeOf(superContext || Object.getPrototypeOf(this));
				     superContext && !superContext.hasOwnProperty(key);
				     superContext = Object.getPrototypeOf(superContext)) {}
				if (!superContext)
					return null;
				var res = superContext[key];
				if (arguments.length > 1) {
					if (typeof(res) != 'function')
						throw new ReferenceError(key + ' is not a function in base class');
					if (typeof(callArgs) != 'object')
						callArgs = this.varargs(arguments, 1);
					res = res.apply(this, callArgs);
				}
				superContext = null;
				return res;
			}
		}
	});

	/* ---------------------------------------------------------- luci.js: dom */

	var domParser = null, dummyElem = null;

	var dom = Class.singleton({
		__name__: 'LuCI.dom',

		elem: function(e) {
			return (e != null && typeof(e) == 'object' && 'nodeType' in e);
		},

		parse: function(s) {
			var elem = null;
			try {
				domParser = domParser || new window.DOMParser();
				elem = domParser.parseFromString(s, 'text/html').body.firstChild;
			}
			catch (e) {}
			if (!elem) {
				dummyElem = dummyElem || document.createElement('div');
				dummyElem.innerHTML = s;
				elem = dummyElem.firstChild;
			}
			return elem || null;
		},

		matches: function(node, selector) {
			var m = this.elem(node) ? (node.matches || node.msMatchesSelector) : null;
			return m ? m.call(node, selector) : false;
		},

		parent: function(node, selector) {
			if (this.elem(node) && node.closest)
				return node.closest(selector);
			while (this.elem(node))
				if (this.matches(node, selector))
					return node;
				else
					node = node.parentNode;
			return null;
		},

		// The string rule everything here is about: an array item becomes a text node,
		// a bare string becomes innerHTML.  (LuCI tests `children`, not the item, for
		// null: a null item in an array turns into the text "null".)
		append: function(node, children) {
			if (!this.elem(node))
				return null;

			if (Array.isArray(children)) {
				for (var i = 0; i < children.length; i++)
					if (this.elem(children[i]))
						node.appendChild(children[i]);
					else if (children !== null && children !== undefined)
						node.appendChild(document.createTextNode('' + children[i]));
				return node.lastChild;
			}
			else if (typeof(children) === 'function') {
				return this.append(node, children(node));
			}
			else if (this.elem(children)) {
				return node.appendChild(children);
			}
			else if (children !== null && children !== undefined) {
				node.innerHTML = '' + children;
				return node.lastChild;
			}

			return null;
		},

		content: function(node, children) {
			if (!this.elem(node))
				return null;
			var dataNodes = node.querySelectorAll('[data-idref]');
			for (var i = 0; i < dataNodes.length; i++)
				delete this.registry[dataNodes[i].getAttribute('data-idref')];
			while (node.firstChild)
				node.removeChild(node.firstChild);
			return this.append(node, children);
		},

		attr: function(node, key, val) {
			if (!this.elem(node))
				return null;
			var attr = null;
			if (typeof(key) === 'object' && key !== null)
				attr = key;
			else if (typeof(key) === 'string')
				attr = {}, attr[key] = val;
			for (key in attr) {
				if (!attr.hasOwnProperty(key) || attr[key] == null)
					continue;
				switch (typeof(attr[key])) {
				case 'function': node.addEventListener(key, attr[key]); break;
				case 'object': node.setAttribute(key, JSON.stringify(attr[key])); break;
				default: node.setAttribute(key, attr[key]);
				}
			}
		},

		// E(tag, attrs, data) or E(tag, data): anything that is not a plain object (or is an
		// array) in second place is the data.  A DOM node there counts as attributes.
		create: function() {
			var html = arguments[0], attr = arguments[1], data = arguments[2], elem;

			if (!(attr instanceof Object) || Array.isArray(attr))
				data = attr, attr = null;

			if (Array.isArray(html)) {
				elem = document.createDocumentFragment();
				for (var i = 0; i < html.length; i++)
					elem.appendChild(this.create(html[i]));
			}
			else if (this.elem(html)) {
				elem = html;
			}
			else if (html.charCodeAt(0) === 60) {
				elem = this.parse(html);
			}
			else {
				elem = document.createElement(html);
			}

			if (!elem)
				return null;

			this.attr(elem, attr);
			this.append(elem, data);
			return elem;
		},

		registry: {},

		data: function(node, key, val) {
			if (!node || !node.getAttribute)
				return null;
			var id = node.getAttribute('data-idref');
			if (arguments.length > 1 && key == null) {
				if (id != null) {
					node.removeAttribute('data-idref');
					val = this.registry[id];
					delete this.registry[id];
					return val;
				}
				return null;
			}
			else if (arguments.length > 2 && key != null && val == null) {
				if (id != null) {
					val = this.registry[id][key];
					delete this.registry[id][key];
					return val;
				}
				return null;
			}
			else if (arguments.length > 2 && key != null && val != null) {
				if (id == null) {
					do { id = Math.floor(Math.random() * 0xffffffff).toString(16); }
					while (this.registry.hasOwnProperty(id));
					node.setAttribute('data-idref', id);
					this.registry[id] = {};
				}
				return (this.registry[id][key] = val);
			}
			else if (arguments.length == 1) {
				return id != null ? this.registry[id] : null;
			}
			else if (arguments.length == 2) {
				if (id != null)
					return this.registry[id][key];
			}
			return null;
		},

		bindClassInstance: function(node, inst) {
			if (!(inst instanceof Class))
				throw new TypeError('Argument must be a class instance');
			return this.data(node, '_class', inst);
		},

		findClassInstance: function(node) {
			var inst = null;
			do {
				inst = this.data(node, '_class');
				node = node.parentNode;
			}
			while (!(inst instanceof Class) && node != null);
			return inst;
		},

		isEmpty: function(node, ignoreFn) {
			for (var c = node.firstElementChild; c != null; c = c.nextElementSibling)
				if (!c.classList.contains('hidden') && (!ignoreFn || !ignoreFn(c)))
					return false;
			return true;
		}
	});

	window.E = function() { return dom.create.apply(dom, arguments); };

	/* ---------------------------------------------------------- luci.js: L */

	var L = window.L = {
		env: { pollinterval: 5 },
		Class: Class,
		dom: dom,
		bind: function(fn, self) {
			return Function.prototype.bind.apply(fn, [ self ].concat(Array.prototype.slice.call(arguments, 2)));
		},
		isObject: function(o) { return o != null && typeof(o) == 'object'; },
		toArray: function(x) {
			if (x == null) return [];
			if (Array.isArray(x)) return x;
			if (typeof(x) == 'object') return [ x ];
			var s = String(x).trim();
			return s != '' ? s.split(/\s+/) : [];
		},
		resolveDefault: function(value, defvalue) {
			return Promise.resolve(value).catch(function() { return defvalue; });
		},
		raise: function(type, fmt) {
			var msg = fmt ? String.prototype.format.apply(fmt, Array.prototype.slice.call(arguments, 2)) : null;
			var e = (type instanceof Error) ? type : new Error(msg || 'Unspecified error');
			if (!(type instanceof Error)) e.name = type || 'Error';
			throw e;
		},
		error: function(e) {
			report.errors.push(String(e && e.stack || e));
			throw e;
		}
	};

	/* ---------------------------------------------------------- ui.js: Table */

	// ui.Table as cbi_update_table uses it: a table found in the page, rows replaced
	// on each update, every cell through E('td', {...}, value).  Sorting is left out.
	var UITable = Class.extend({
		__name__: 'LuCI.ui.Table',

		__init__: function(node) {
			var headrow = node.querySelector('tr, .tr'), options = { sortable: [], captionClasses: [] };
			if (headrow)
				headrow.querySelectorAll('th, .th').forEach(function(th, i) {
					options.sortable[i] = !th.classList.contains('cbi-section-actions');
					options.captionClasses[i] = [].slice.call(th.classList).filter(function(c) { return c != 'th'; });
				});
			this.id = node.id;
			this.node = node;
			this.options = options;
		},

		update: function(data, placeholder) {
			placeholder = placeholder || this.options.placeholder || _('No data', 'empty table placeholder');

			if (!Array.isArray(data))
				return;

			this.data = data;
			this.placeholder = placeholder;

			var n = 0, rows = this.node.querySelectorAll('tr'), trows = [],
			    headings = [].slice.call(this.node.firstElementChild.querySelectorAll('th')),
			    captionClasses = this.options.captionClasses;

			data.forEach(function(row) {
				trows[n] = E('tr', { 'class': 'tr' });

				for (var i = 0; i < headings.length; i++) {
					var text = (headings[i].innerText || '').trim();
					var raw = Array.isArray(row[i]) ? row[i][0] : null;
					var disp = Array.isArray(row[i]) ? row[i][1] : row[i];
					var td = trows[n].appendChild(E('td', {
						'class': 'td',
						'data-title': (text !== '') ? text : null,
						'data-value': raw
					}, (disp != null) ? ((disp instanceof window.DocumentFragment) ? disp.cloneNode(true) : disp) : ''));

					if (typeof(captionClasses) == 'object')
						DOMTokenList.prototype.add.apply(td.classList, L.toArray(captionClasses[i]));
				}

				trows[n].classList.add('cbi-rowstyle-%d'.format((n++ % 2) ? 2 : 1));
			});

			for (var i = 0; i < n; i++) {
				if (rows[i + 1])
					this.node.replaceChild(trows[i], rows[i + 1]);
				else
					this.node.appendChild(trows[i]);
			}

			while (rows[++n])
				this.node.removeChild(rows[n]);

			if (placeholder && this.node.firstElementChild === this.node.lastElementChild) {
				var trow = this.node.appendChild(E('tr', { 'class': 'tr placeholder' }));
				trow.appendChild(E('td', { 'class': 'td' }, placeholder));
			}

			return this.node;
		}
	});

	window.cbi_update_table = function(table, data, placeholder) {
		var target = dom.elem(table) ? table : document.querySelector(table);
		if (!dom.elem(target))
			return;
		var t = dom.findClassInstance(target);
		if (!(t instanceof UITable)) {
			t = new UITable(target);
			dom.bindClassInstance(target, t);
		}
		t.update(data, placeholder);
	};

	/* ---------------------------------------------------------- modules */

	var baseclass = Class.extend({ __name__: 'LuCI.baseclass' });

	// luci.js's view: load(), then render(), then the nodes replace the spinner in #view.
	// (__done is the harness's handle on that chain; LuCI drops it.)
	var view = Class.extend({
		__name__: 'LuCI.view',
		__init__: function() {
			var vp = document.getElementById('view');
			dom.content(vp, E('div', { 'class': 'spinning' }, _('Loading view…')));
			this.__done = Promise.resolve(this.load())
				.then(L.bind(this.render, this))
				.then(function(nodes) { dom.content(document.getElementById('view'), nodes); })
				.catch(L.error);
		},
		load: function() {},
		render: function() {}
	});

	var pollFns = window.__pollFns = [];
	var poll = {
		add: function(fn, interval) {
			if (interval == null || interval <= 0)
				interval = L.env.pollinterval;
			if (isNaN(interval) || typeof(fn) != 'function')
				throw new TypeError('Invalid argument to LuCI.Poll.add()');
			pollFns.push(fn);
			report.polls.push(interval);
			return true;
		}
	};

	// rpc.js's reply handling: a ubus status code resolves (to `expect`'s default when
	// it names one), a JSON-RPC error frame rejects.  fixture.rpc[object.method] is the
	// reply data, fixture.rpc_status[...] a ubus status code, fixture.rpc_errors[...]
	// an error message.
	var TYPE = Object.prototype.toString;
	var rpc = {
		declare: function(options) {
			report.rpc.push([ options.object, options.method ]);
			return function() {
				var key = options.object + '.' + options.method, f = window.__fixture;
				return new Promise(function(resolveFn, rejectFn) {
					if (f.rpc_errors && f.rpc_errors[key] != null)
						return rejectFn(new Error('RPC call to %s/%s failed with error %d: %s'
							.format(options.object, options.method, -32002, f.rpc_errors[key])));
					var ret;
					if (f.rpc_status && f.rpc_status[key] != null)
						ret = f.rpc_status[key];
					else
						ret = f.rpc ? f.rpc[key] : undefined;
					if (ret === undefined)
						ret = 4;                 // UBUS_STATUS_NOT_FOUND: no such object
					if (options.reject && typeof(ret) == 'number' && ret !== 0)
						return rejectFn(new Error('RPC call to %s/%s failed with ubus code %d'
							.format(options.object, options.method, ret)));
					// the page gets a deep copy, as it would from JSON
					ret = JSON.parse(JSON.stringify(ret));
					if (options.expect) {
						for (var k in options.expect) {
							if (ret != null && k != '')
								ret = ret[k];
							if (ret == null || TYPE.call(ret) != TYPE.call(options.expect[k]))
								ret = options.expect[k];
							break;
						}
					}
					resolveFn(ret);
				});
			};
		}
	};

	var uci = {
		load: function(config) {
			report.uci.push(config);
			return Promise.resolve(config);
		},
		get: function(config, sid, opt) {
			var c = (fixture.uci || {})[config] || {}, s = c[sid];
			if (s == null) return null;
			return opt == null ? s : (s[opt] != null ? s[opt] : null);
		}
	};

	var network = {
		getNetworks: function() {
			return Promise.resolve((fixture.networks || []).map(function(n) {
				var dev = n.device ? { getName: function() { return n.device; } } : null;
				return {
					getName: function() { return n.name; },
					getL3Device: function() { return dev; },
					getDevice: function() { return dev; }
				};
			}));
		}
	};

	// form: records what a view declares and renders a plain cbi-like DOM from it
	// (titles and descriptions through E() as LuCI's widgets pass them).
	function Option(section, cls, name, title, description) {
		this.section = section; this.cls = cls.__name__; this.option = name;
		this.title = title; this.description = description; this.choices = []; this.deps = [];
	}
	Option.prototype.value = function(k, label) { this.choices.push([ k, label != null ? label : k ]); };
	Option.prototype.depends = function(k, v) { this.deps.push([ k, v ]); };
	Option.prototype.renderWidget = function() {
		var cfg = this.section.map.config, val = uci.get(cfg, this.section.name, this.option);
		var id = 'widget.cbid.%s.%s.%s'.format(cfg, this.section.name, this.option);
		if (this.cls == 'Flag')
			return E('input', { 'type': 'checkbox', 'id': id, 'checked': (val == '1' || (val == null && this.default == '1')) ? '' : null });
		if (this.choices.length)
			return E('select', { 'id': id }, this.choices.map(function(c) {
				return E('option', { 'value': c[0], 'selected': (c[0] == val) ? '' : null }, [ c[1] ]);
			}));
		return E('input', { 'type': 'text', 'id': id, 'value': Array.isArray(val) ? val.join(' ') : val,
		                    'placeholder': this.placeholder });
	};

	function Section(map, cls, name, type, title, description) {
		this.map = map; this.cls = cls.__name__; this.name = name; this.type = type;
		this.title = title; this.description = description; this.options = []; this.tabs = [];
	}
	Section.prototype.tab = function(name) { this.tabs.push(name); };
	Section.prototype.option = function(cls, name, title, description) {
		var o = new Option(this, cls, name, title, description);
		this.options.push(o);
		return o;
	};
	Section.prototype.taboption = function(tab, cls, name, title, description) {
		return this.option(cls, name, title, description);
	};
	Section.prototype.formvalue = function(sid, name) { return (fixture.formvalues || {})[name]; };

	var FormMap = Class.extend({
		__name__: 'LuCI.form.Map',
		__init__: function(config, title, description) {
			this.config = config; this.title = title; this.description = description; this.sections = [];
			window.__report.maps = (window.__report.maps || []).concat([ this ]);
		},
		section: function(cls, name, type, title, description) {
			var s = new Section(this, cls, name, type, title, description);
			this.sections.push(s);
			return s;
		},
		render: function() {
			var map = this;
			return Promise.resolve(E('div', { 'class': 'cbi-map', 'data-config': this.config }, [
				E('h2', {}, this.title),
				this.description ? E('div', { 'class': 'cbi-map-descr' }, this.description) : E([]),
				E('div', {}, this.sections.map(function(s) {
					return E('div', { 'class': 'cbi-section', 'data-section-id': s.name }, [
						E('h3', {}, s.title),
						s.description ? E('div', { 'class': 'cbi-section-descr' }, s.description) : E([]),
						E('div', {}, s.options.map(function(o) {
							return E('div', { 'class': 'cbi-value', 'data-name': o.option }, [
								E('label', { 'class': 'cbi-value-title' }, o.title),
								E('div', { 'class': 'cbi-value-field' }, [
									o.renderWidget(),
									o.description ? E('div', { 'class': 'cbi-value-description' }, o.description) : E([])
								])
							]);
						}))
					]);
				}))
			]));
		}
	});

	var form = { Map: FormMap };
	[ 'NamedSection', 'TypedSection', 'GridSection', 'Flag', 'Value', 'ListValue', 'DynamicList',
	  'DummyValue', 'MultiValue' ].forEach(function(c) { form[c] = { __name__: c }; });

	var modules = { baseclass: baseclass, view: view, dom: dom, poll: poll, rpc: rpc, uci: uci,
	                network: network, form: form };

	/* ---------------------------------------------- luci-mod-status: status/index.js */

	// The overview gives each include a hidden cbi-section (its title in an h3); each
	// poll step calls load(), skips the include when that rejects, and puts whatever
	// render() returns, unless null, into the section and shows it.
	L.overviewSection = function(include) {
		var container = E('div'), title = include.title;
		var sect = E('div', { 'class': 'cbi-section', 'style': 'display:none' }, [
			title != '' ? E('h3', title) : '', container ]);
		document.getElementById('view').appendChild(sect);
		return {
			node: sect,
			step: function() {
				var failed = false;
				return Promise.resolve(typeof(include.load) == 'function'
					? include.load().catch(function() { failed = true; }) : null).then(function(data) {
					if (failed)
						return;
					var content = (typeof(include.render) == 'function') ? include.render(data) : include.content;
					if (content != null) {
						sect.style.display = '';
						dom.content(container, content);
					}
				});
			}
		};
	};

	/* ---------------------------------------------------------- luci.js: require */

	// A class file: leading 'use strict' / 'require NAME [as ALIAS]' strings name its
	// dependencies; the source becomes the body of function(window, document, L, deps...),
	// which must return a class; the loader instantiates it.
	L.compileClass = function(name, source) {
		var requirematch = /^require[ \t]+(\S+)(?:[ \t]+as[ \t]+([a-zA-Z_]\S*))?$/,
		    strictmatch = /^use[ \t]+strict$/, deps = [], args = '';

		for (var i = 0, off = -1, quote = -1, esc = false; i < source.length; i++) {
			var chr = source.charCodeAt(i);
			if (esc) {
				esc = false;
			}
			else if (chr == 92) {
				esc = true;
			}
			else if (chr == quote) {
				var s = source.substring(off, i), m = requirematch.exec(s);
				if (m) {
					var dep = m[1], as = m[2] || dep.replace(/[^a-zA-Z0-9_]/g, '_');
					if (!(dep in modules))
						throw new Error('no stand-in for module ' + dep);
					deps.push(modules[dep]);
					args += ', ' + as;
				}
				else if (!strictmatch.exec(s)) {
					break;
				}
				off = -1;
				quote = -1;
			}
			else if (quote == -1 && (chr == 34 || chr == 39)) {
				off = i + 1;
				quote = chr;
			}
		}

		var factory = window.eval('(function(window, document, L%s) { %s })\n\n//# sourceURL=%s\n'
			.format(args, source, name));
		var cls = factory.apply(factory, [ window, document, L ].concat(deps));

		if (!Class.isSubclass(cls))
			throw new TypeError('"' + name + '" factory yields invalid constructor');

		return new cls();
	};
})(window, document);
