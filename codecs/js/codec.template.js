// citynode payload codec for The Things Stack and ChirpStack: LoRaWAN Payload Codec API (TS013).
// ECMAScript 5.1, self-contained, never throws. Paste this whole file as the device's payload formatter.
//
// The tables below are generated from codecs/spec/citynode.json; the interpreter mirrors
// codecs/citynode_codec/codec.py and cbor.py, so the bridge and the network server decode the same
// bytes to the same data and the same errors.
var SPEC = /*@SPEC@*/null;

var NUM = 0, ENUM = 1, BOOL = 2;
var OP_FIELD = 0, OP_OPTIONAL = 1, OP_PRESENCE = 2, OP_FLAGS = 3, OP_SWITCH = 4;
var F_NAME = 0, F_KIND = 1, F_BITS = 2, F_MUL = 3, F_DIV = 4, F_OFF = 5, F_LO = 6, F_HI = 7, F_MISSING = 8,
  F_DEFAULT = 9, F_VALUES = 10, F_DEC = 11, F_LO_TXT = 12, F_HI_TXT = 13;
var M_NAME = 0, M_DIR = 1, M_FPORT = 2, M_FORMAT = 3, M_LAYOUT = 5;
var WIDTH_BITS = 4;
var MAX_INT = 9007199254740992; // 2^53

function CodecError(text) { this.text = text; }

function err(key, args) {
  return new CodecError(SPEC.errors[key].replace(/\{(\w+)\}/g, function (m, k) { return String(args[k]); }));
}

function has(obj, key) { return Object.prototype.hasOwnProperty.call(obj, key); }

function fmt(value, dec) {
  if (dec === 0) { return value === Math.floor(value) ? String(value) : value.toFixed(1); }
  return value.toFixed(dec);
}

// ------------------------------------------------------------------------------------ decoding

function Reader(bytes, message) {
  this.b = bytes; this.pos = 0; this.total = bytes.length * 8; this.length = bytes.length; this.message = message;
}

Reader.prototype.read = function (bits, what) {
  if (this.pos + bits > this.total) { throw err('truncated', {message: this.message, length: this.length, field: what}); }
  var v = 0;
  for (var i = 0; i < bits; i++) {
    var p = this.pos + i;
    v = v * 2 + ((this.b[p >> 3] >> (7 - (p & 7))) & 1);
  }
  this.pos += bits;
  return v;
};

function decodeValue(f, raw, message) {
  var kind = f[F_KIND];
  if (kind === NUM) {
    if (raw === f[F_MISSING]) { return null; }
    if (raw < f[F_LO] || raw > f[F_HI]) {
      throw err('range', {message: message, field: f[F_NAME], value: fmt((raw + f[F_OFF]) * f[F_MUL] / f[F_DIV], f[F_DEC]),
        min: f[F_LO_TXT], max: f[F_HI_TXT]});
    }
    return (raw + f[F_OFF]) * f[F_MUL] / f[F_DIV];
  }
  if (kind === ENUM) {
    if (raw >= f[F_VALUES].length) { throw err('code', {message: message, field: f[F_NAME], code: raw}); }
    return f[F_VALUES][raw];
  }
  if (kind === BOOL) { return raw === 1; }
  var parts = f[F_VALUES];
  var c = raw % Math.pow(2, parts[2]);
  var rest = (raw - c) / Math.pow(2, parts[2]);
  var b = rest % Math.pow(2, parts[1]);
  var a = (rest - b) / Math.pow(2, parts[1]);
  return a + '.' + b + '.' + c;
}

function decodeOps(ops, r, data, present, message) {
  for (var i = 0; i < ops.length; i++) {
    var op = ops[i], code = op[0], f, j;
    if (code === OP_FIELD) {
      f = SPEC.fields[op[1]];
      data[f[F_NAME]] = decodeValue(f, r.read(f[F_BITS], f[F_NAME]), message);
    } else if (code === OP_OPTIONAL) {
      f = SPEC.fields[op[1]];
      if (present[f[F_NAME]]) { data[f[F_NAME]] = decodeValue(f, r.read(f[F_BITS], f[F_NAME]), message); }
    } else if (code === OP_PRESENCE) {
      for (j = 0; j < op[1].length; j++) { present[op[1][j]] = r.read(1, 'presence') === 1; }
    } else if (code === OP_FLAGS) {
      var bits = r.read(op[1], 'flags'), flags = [];
      for (j = 0; j < op[1]; j++) {
        if (Math.floor(bits / Math.pow(2, op[1] - 1 - j)) % 2 === 1) { flags.push(op[2][j]); }
      }
      data.flags = flags;
    } else if (code === OP_SWITCH) {
      decodeOps(op[2][data[op[1]]], r, data, present, message);
    } else {
      decodeSeries(op, r, data, present, message);
    }
  }
}

function decodeSeries(op, r, data, present, message) {
  var count = data[op[2]];
  var interval = has(data, 'sample_interval_s') ? data.sample_interval_s : 0;
  var samples = [], i, k;
  for (i = 0; i < count; i++) { samples.push({offset_s: (i - count + 1) * interval}); }
  var gaps = r.read(1, 'gaps');
  for (k = 0; k < op[1].length; k++) {
    var f = SPEC.fields[op[1][k]], name = f[F_NAME];
    if (has(present, name) && !present[name]) { continue; }
    var mask = gaps ? r.read(count, name) : Math.pow(2, count) - 1;
    var raw = null, width = 0;
    for (i = 0; i < count; i++) {
      if (Math.floor(mask / Math.pow(2, count - 1 - i)) % 2 === 0) { samples[i][name] = null; continue; }
      if (raw === null) {
        raw = r.read(f[F_BITS], name);
        width = r.read(WIDTH_BITS, name);
      } else if (width) {
        var z = r.read(width, name);
        raw += (z % 2 === 1) ? -(z + 1) / 2 : z / 2;
        if (raw < 0 || raw >= Math.pow(2, f[F_BITS])) {
          throw err('range', {message: message, field: name, value: 'delta', min: f[F_LO_TXT], max: f[F_HI_TXT]});
        }
      }
      samples[i][name] = decodeValue(f, raw, message);
    }
  }
  var offset = op[3];
  if (offset !== null && present[offset]) {
    // Unevenly spaced samples carry their age; it replaces the spacing-derived offset.
    for (i = 0; i < count; i++) {
      var age = samples[i][offset];
      // A sample without its time cannot be placed, and no encoder writes one.
      if (age === null) { throw err('sample_age', {message: message, index: i, field: offset}); }
      delete samples[i][offset];
      samples[i].offset_s = -age;
    }
  }
  data.samples = samples;
}

function decodeMessage(msg, bytes) {
  var name = msg[M_NAME];
  if (msg[M_LAYOUT] === null) { return cborDecodeMessage(bytes); }
  var r = new Reader(bytes, name);
  var format = r.read(SPEC.formatBits, 'format');
  if (format !== msg[M_FORMAT]) { throw err('format', {message: name, format: format, expected: msg[M_FORMAT]}); }
  var data = {message: name};
  decodeOps(msg[M_LAYOUT], r, data, {}, name);
  var used = (r.pos + 7) >> 3;
  if (used !== r.length) { throw err('length', {message: name, expected: used, length: r.length}); }
  for (var p = r.pos; p < r.total; p++) {
    if ((bytes[p >> 3] >> (7 - (p & 7))) & 1) { throw err('padding', {message: name}); }
  }
  return data;
}

function validBytes(bytes) {
  if (Object.prototype.toString.call(bytes) !== '[object Array]' &&
      !(typeof bytes === 'object' && bytes !== null && typeof bytes.length === 'number')) { return false; }
  for (var i = 0; i < bytes.length; i++) {
    var b = bytes[i];
    if (typeof b !== 'number' || b !== Math.floor(b) || b < 0 || b > 255) { return false; }
  }
  return true;
}

function decodePort(ports, input) {
  try {
    if (!input || typeof input !== 'object') { return {errors: ['input must be {bytes, fPort}']}; }
    var fport = input.fPort;
    var name = (typeof fport === 'number' && has(ports, String(fport))) ? ports[String(fport)] : null;
    if (name === null) { throw err('unknown_fport', {fport: fport}); }
    if (!validBytes(input.bytes)) { return {errors: ['bytes must be an array of integers 0..255']}; }
    if (input.bytes.length === 0) { throw err('empty', {}); }
    return {data: decodeMessage(SPEC.messages[name], input.bytes)};
  } catch (e) {
    if (e instanceof CodecError) { return {errors: [e.text]}; }
    return {errors: ['internal decoder error: ' + e]};
  }
}

function decodeUplink(input) { return decodePort(SPEC.uplinkPorts, input); }

function decodeDownlink(input) { return decodePort(SPEC.downlinkPorts, input); }

// ------------------------------------------------------------------------------------ encoding

function isNumber(v) { return typeof v === 'number'; }

function encodeValue(f, v, message) {
  var kind = f[F_KIND], name = f[F_NAME], i;
  if (kind === NUM) {
    if (v === null) {
      if (f[F_MISSING] === null) { throw err('type', {message: message, field: name, expected: 'a number'}); }
      return f[F_MISSING];
    }
    if (!isNumber(v) || v !== v || v === Infinity || v === -Infinity) {
      throw err('type', {message: message, field: name, expected: 'a number'});
    }
    var x = v * f[F_DIV] / f[F_MUL] + 0.5;
    var rangeErr = err('range', {message: message, field: name, value: fmt(v, f[F_DEC]), min: f[F_LO_TXT], max: f[F_HI_TXT]});
    if (x < -MAX_INT || x > MAX_INT) { throw rangeErr; }
    var raw = Math.floor(x) - f[F_OFF];
    if (raw < f[F_LO] || raw > f[F_HI]) { throw rangeErr; }
    return raw;
  }
  if (kind === ENUM) {
    if (typeof v === 'string') {
      for (i = 0; i < f[F_VALUES].length; i++) { if (f[F_VALUES][i] === v) { return i; } }
    }
    throw err('type', {message: message, field: name, expected: 'one of ' + f[F_VALUES].join(', ')});
  }
  if (kind === BOOL) {
    if (typeof v !== 'boolean') { throw err('type', {message: message, field: name, expected: 'true or false'}); }
    return v ? 1 : 0;
  }
  var parts = f[F_VALUES];
  var bad = err('type', {message: message, field: name, expected: 'a version like 1.2.3'});
  if (typeof v !== 'string') { throw bad; }
  var nums = v.split('.');
  if (nums.length !== 3) { throw bad; }
  var out = 0;
  for (i = 0; i < 3; i++) {
    if (!/^[0-9]+$/.test(nums[i]) || parseInt(nums[i], 10) >= Math.pow(2, parts[i])) { throw bad; }
    out = out * Math.pow(2, parts[i]) + parseInt(nums[i], 10);
  }
  return out;
}

function Writer() { this.bits = []; }

Writer.prototype.write = function (bits, value) {
  for (var i = bits - 1; i >= 0; i--) { this.bits.push(Math.floor(value / Math.pow(2, i)) % 2); }
};

Writer.prototype.bytes = function () {
  var out = [];
  for (var i = 0; i < this.bits.length; i += 8) {
    var b = 0;
    for (var j = 0; j < 8; j++) { b = b * 2 + (i + j < this.bits.length ? this.bits[i + j] : 0); }
    out.push(b);
  }
  return out;
};

function fieldInput(f, data, message) {
  var name = f[F_NAME];
  if (has(data, name)) { return data[name] === undefined ? null : data[name]; }
  if (f[F_DEFAULT] !== null) { return f[F_DEFAULT]; }
  if (f[F_KIND] === NUM && f[F_MISSING] !== null) { return null; }
  throw err('missing_field', {message: message, field: name});
}

function bitLength(x) { var n = 0; while (x >= 1) { x = Math.floor(x / 2); n++; } return n; }

function encodeOps(ops, w, data, present, message) {
  for (var i = 0; i < ops.length; i++) {
    var op = ops[i], code = op[0], f, j, k;
    if (code === OP_FIELD) {
      f = SPEC.fields[op[1]];
      w.write(f[F_BITS], encodeValue(f, fieldInput(f, data, message), message));
    } else if (code === OP_OPTIONAL) {
      f = SPEC.fields[op[1]];
      if (present[f[F_NAME]]) { w.write(f[F_BITS], encodeValue(f, data[f[F_NAME]] === undefined ? null : data[f[F_NAME]], message)); }
    } else if (code === OP_PRESENCE) {
      var samples = data.samples;
      for (j = 0; j < op[1].length; j++) {
        var name = op[1][j], here = has(data, name);
        if (!here && Object.prototype.toString.call(samples) === '[object Array]') {
          for (k = 0; k < samples.length; k++) {
            if (samples[k] && typeof samples[k] === 'object' && has(samples[k], name)) { here = true; break; }
          }
        }
        present[name] = here;
        w.write(1, here ? 1 : 0);
      }
    } else if (code === OP_FLAGS) {
      var flags = has(data, 'flags') ? data.flags : [];
      if (Object.prototype.toString.call(flags) !== '[object Array]') {
        throw err('type', {message: message, field: 'flags', expected: 'a list of flag names'});
      }
      var bits = 0;
      for (j = 0; j < flags.length; j++) {
        var found = false;
        for (k = 0; k < op[2].length; k++) {
          if (op[2][k] === flags[j]) {
            if (Math.floor(bits / Math.pow(2, op[1] - 1 - k)) % 2 === 0) { bits += Math.pow(2, op[1] - 1 - k); }
            found = true;
            break;
          }
        }
        if (!found) { throw err('unknown_flag', {message: message, flag: flags[j]}); }
      }
      w.write(op[1], bits);
    } else if (code === OP_SWITCH) {
      encodeOps(op[2][data[op[1]]], w, data, present, message);
    } else {
      encodeSeries(op, w, data, present, message);
    }
  }
}

function encodeSeries(op, w, data, present, message) {
  var samples = data.samples, count = samples.length, columns = [], gaps = 0, i, k;
  for (k = 0; k < op[1].length; k++) {
    var f = SPEC.fields[op[1][k]], name = f[F_NAME];
    if (has(present, name) && !present[name]) { continue; }
    var raws = [];
    for (i = 0; i < count; i++) {
      var v = samples[i][name];
      if (v === undefined || v === null) { raws.push(null); gaps = 1; } else { raws.push(encodeValue(f, v, message)); }
    }
    columns.push([f, raws]);
  }
  w.write(1, gaps);
  for (k = 0; k < columns.length; k++) {
    var fld = columns[k][0], col = columns[k][1];
    if (gaps) {
      var mask = 0;
      for (i = 0; i < col.length; i++) { mask = mask * 2 + (col[i] === null ? 0 : 1); }
      w.write(count, mask);
    }
    var values = [];
    for (i = 0; i < col.length; i++) { if (col[i] !== null) { values.push(col[i]); } }
    if (values.length === 0) { continue; }
    var zigzags = [], width = 0;
    for (i = 1; i < values.length; i++) {
      var d = values[i] - values[i - 1];
      var z = d >= 0 ? d * 2 : -d * 2 - 1;
      zigzags.push(z);
      width = Math.max(width, bitLength(z));
    }
    w.write(fld[F_BITS], values[0]);
    w.write(WIDTH_BITS, width);
    if (width) { for (i = 0; i < zigzags.length; i++) { w.write(width, zigzags[i]); } }
  }
}

function prepare(msg, data) {
  var name = msg[M_NAME];
  if (!has(SPEC.series, name)) { return data; }
  var countField = SPEC.series[name][0], offsetField = SPEC.series[name][1];
  var f = SPEC.fields[countField], top = f[F_HI] + f[F_OFF];
  var samples = data.samples;
  var given = has(data, countField) ? data[countField] : (samples ? samples.length : 0);
  if (Object.prototype.toString.call(samples) !== '[object Array]' || samples.length < 1 || samples.length > top ||
      given !== samples.length) {
    throw err('count', {message: name, field: 'samples', min: 1, max: top});
  }
  for (var i = 0; i < samples.length; i++) {
    if (!samples[i] || typeof samples[i] !== 'object' || Object.prototype.toString.call(samples[i]) === '[object Array]') {
      throw err('type', {message: name, field: 'samples', expected: 'a list of objects'});
    }
  }
  var d = {};
  for (var key in data) { if (has(data, key)) { d[key] = data[key]; } }
  d[countField] = samples.length;
  var n = samples.length, offsets = [], anyOffset = false, j;
  for (i = 0; i < n; i++) {
    offsets.push(has(samples[i], 'offset_s') && samples[i].offset_s !== undefined ? samples[i].offset_s : null);
    if (offsets[i] !== null) { anyOffset = true; }
  }
  if (offsetField !== null && anyOffset) {
    var interval = data.sample_interval_s, regular = isNumber(interval);
    if (regular) {
      for (i = 0; i < n; i++) { if (offsets[i] !== (i - n + 1) * interval) { regular = false; break; } }
    }
    if (!regular) {
      var aged = [];
      for (i = 0; i < n; i++) {
        if (!isNumber(offsets[i])) {
          throw err('type', {message: name, field: 'offset_s', expected: 'a number in every sample'});
        }
        var copy = {};
        for (j in samples[i]) { if (has(samples[i], j)) { copy[j] = samples[i][j]; } }
        copy[offsetField] = -offsets[i];
        aged.push(copy);
      }
      d.samples = aged;
    }
  }
  return d;
}

function encodeMessage(name, data) {
  var msg = has(SPEC.messages, name) ? SPEC.messages[name] : null;
  if (msg === null) { throw err('unknown_message', {message: name}); }
  if (msg[M_LAYOUT] === null) {
    var payload = cborEncode(data);
    cborDecodeMessage(payload);
    return {fPort: msg[M_FPORT], bytes: payload};
  }
  data = prepare(msg, data);
  var w = new Writer();
  w.write(SPEC.formatBits, msg[M_FORMAT]);
  encodeOps(msg[M_LAYOUT], w, data, {}, name);
  return {fPort: msg[M_FPORT], bytes: w.bytes()};
}

function encodeDir(input, direction) {
  try {
    var data = input && typeof input === 'object' ? input.data : undefined;
    if (!data || typeof data !== 'object' || Object.prototype.toString.call(data) === '[object Array]') {
      throw err('type', {message: 'data', field: 'data', expected: 'an object'});
    }
    var name = data.message;
    if (typeof name !== 'string' || !has(SPEC.messages, name)) { throw err('unknown_message', {message: name}); }
    if (SPEC.messages[name][M_DIR] !== direction) {
      throw err('direction', {message: name, direction: direction === 0 ? 'uplink' : 'downlink'});
    }
    return encodeMessage(name, data);
  } catch (e) {
    if (e instanceof CodecError) { return {errors: [e.text]}; }
    return {errors: ['internal encoder error: ' + e]};
  }
}

function encodeDownlink(input) { return encodeDir(input, 1); }

function encodeUplink(input) { return encodeDir(input, 0); }

// ---------------------------------------------------------------------------------------- CBOR

var CBOR_BREAK = {};
var CBOR_MAX_DEPTH = 8;

function CborBad(reason) { this.reason = reason; }

function CborDecoder(bytes) { this.b = bytes; this.i = 0; }

CborDecoder.prototype.take = function (n) {
  if (this.i + n > this.b.length) { throw new CborBad('truncated'); }
  var out = this.b.slice(this.i, this.i + n);
  this.i += n;
  return out;
};

function uint(bytes) { var v = 0; for (var i = 0; i < bytes.length; i++) { v = v * 256 + bytes[i]; } return v; }

CborDecoder.prototype.arg = function (info) {
  if (info < 24) { return info; }
  if (info === 24) { return this.take(1)[0]; }
  if (info === 25) { return uint(this.take(2)); }
  if (info === 26) { return uint(this.take(4)); }
  if (info === 27) {
    var b = this.take(8), hi = uint(b.slice(0, 4)), lo = uint(b.slice(4, 8));
    if (hi > 0x200000 || (hi === 0x200000 && lo > 0)) { return Infinity; } // beyond 2^53: refused by the caller
    return hi * 4294967296 + lo;
  }
  throw new CborBad('invalid');
};

function utf8(bytes) {
  var out = '', i = 0;
  while (i < bytes.length) {
    var c = bytes[i], need, cp, min;
    if (c < 0x80) { out += String.fromCharCode(c); i++; continue; }
    if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; min = 0x80; } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2; cp = c & 0x0F; min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; min = 0x10000; } else { throw new CborBad('invalid utf-8'); }
    if (i + need >= bytes.length) { throw new CborBad('invalid utf-8'); }
    for (var k = 1; k <= need; k++) {
      var cc = bytes[i + k];
      if ((cc & 0xC0) !== 0x80) { throw new CborBad('invalid utf-8'); }
      cp = cp * 64 + (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) { throw new CborBad('invalid utf-8'); }
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out += String.fromCharCode(0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
    } else { out += String.fromCharCode(cp); }
    i += need + 1;
  }
  return out;
}

function floatBits(b, expBits, mantBits) {
  var bytes = b.length, sign = b[0] >> 7, all, i;
  // Split into exponent and mantissa with arithmetic (no typed arrays in every ES5 runtime).
  var mant = 0, exp = 0, bit, pos = 1;
  for (i = 0; i < bytes * 8; i++) {
    bit = (b[i >> 3] >> (7 - (i & 7))) & 1;
    if (i === 0) { continue; }
    if (pos <= expBits) { exp = exp * 2 + bit; } else { mant = mant * 2 + bit; }
    pos++;
  }
  all = Math.pow(2, expBits) - 1;
  var bias = Math.pow(2, expBits - 1) - 1, val;
  if (exp === 0) { val = mant * Math.pow(2, 1 - bias - mantBits); } else if (exp === all) {
    val = mant === 0 ? Infinity : NaN;
  } else { val = (mant + Math.pow(2, mantBits)) * Math.pow(2, exp - bias - mantBits); }
  return sign ? -val : val;
}

function finite(x) {
  if (x !== x || x === Infinity || x === -Infinity) { throw new CborBad('number out of range'); }
  return x;
}

function cborKey(k) {
  if (typeof k !== 'string' || !/^[a-z][a-z0-9_]{0,31}$/.test(k)) { throw new CborBad('keys must be snake_case text'); }
  return k;
}

CborDecoder.prototype.value = function (depth) {
  var x = this.item(depth + 1);
  if (x === CBOR_BREAK) { throw new CborBad('invalid'); }
  return x;
};

CborDecoder.prototype.item = function (depth) {
  if (depth > CBOR_MAX_DEPTH) { throw new CborBad('nested too deep'); }
  var ib = this.take(1)[0], major = ib >> 5, info = ib & 31, out, k, n, i;
  if (major === 7) {
    if (info === 20) { return false; }
    if (info === 21) { return true; }
    if (info === 22) { return null; }
    if (info === 25) { return finite(floatBits(this.take(2), 5, 10)); }
    if (info === 26) { return finite(floatBits(this.take(4), 8, 23)); }
    if (info === 27) { return finite(floatBits(this.take(8), 11, 52)); }
    if (info === 31) { return CBOR_BREAK; }
    if (info === 28 || info === 29 || info === 30 || (info === 24 && this.take(1)[0] < 32)) { throw new CborBad('invalid'); }
    throw new CborBad('unsupported type');
  }
  if (info === 31) {
    if (major === 3) {
      var parts = '';
      for (;;) {
        var cb = this.take(1)[0];
        if (cb === 0xFF) { return parts; }
        if ((cb >> 5) !== 3 || (cb & 31) === 31) { throw new CborBad('invalid'); }
        parts += utf8(this.take(this.arg(cb & 31)));
      }
    }
    if (major === 4) {
      out = [];
      for (;;) {
        var x = this.item(depth + 1);
        if (x === CBOR_BREAK) { return out; }
        out.push(x);
      }
    }
    if (major === 5) {
      out = {};
      for (;;) {
        k = this.item(depth + 1);
        if (k === CBOR_BREAK) { return out; }
        k = cborKey(k);
        out[k] = this.value(depth);
      }
    }
    if (major === 2) { throw new CborBad('unsupported type'); }
    throw new CborBad('invalid');
  }
  n = this.arg(info);
  if (major === 0) {
    if (n > MAX_INT) { throw new CborBad('number out of range'); }
    return n;
  }
  if (major === 1) {
    if (n >= MAX_INT) { throw new CborBad('number out of range'); }
    return -1 - n;
  }
  if (major === 3) { return utf8(this.take(n)); }
  if (major === 4) {
    if (n > this.b.length) { throw new CborBad('truncated'); }
    out = [];
    for (i = 0; i < n; i++) { out.push(this.value(depth)); }
    return out;
  }
  if (major === 5) {
    if (n > this.b.length) { throw new CborBad('truncated'); }
    out = {};
    for (i = 0; i < n; i++) {
      k = this.item(depth + 1);
      if (k === CBOR_BREAK) { throw new CborBad('invalid'); }
      k = cborKey(k);
      out[k] = this.value(depth);
    }
    return out;
  }
  throw new CborBad('unsupported type');
};

function cborDecode(bytes) {
  var d = new CborDecoder(bytes);
  var x = d.item(0);
  if (x === CBOR_BREAK) { throw new CborBad('invalid'); }
  if (d.i !== bytes.length) { throw new CborBad('trailing bytes'); }
  return x;
}

function cborDecodeMessage(bytes) {
  var data;
  try {
    data = cborDecode(bytes);
  } catch (e) {
    if (e instanceof CborBad) { throw err('cbor', {reason: e.reason}); }
    throw e;
  }
  if (!data || typeof data !== 'object' || Object.prototype.toString.call(data) === '[object Array]' ||
      typeof data.message !== 'string') {
    throw err('cbor', {reason: "payload must be a map with a 'message' key"});
  }
  var message = data.message;
  if (!/^[a-z][a-z0-9_]{0,31}$/.test(message)) { throw err('cbor', {reason: 'message must be snake_case text'}); }
  for (var name in data) {
    if (!has(data, name) || !has(SPEC.fields, name)) { continue; }
    var f = SPEC.fields[name];
    if (f[F_KIND] !== NUM) { continue; }
    var v = data[name];
    if (v === null) { continue; }
    if (typeof v !== 'number') { throw err('type', {message: message, field: name, expected: 'a number'}); }
    var lo = (f[F_LO] + f[F_OFF]) * f[F_MUL] / f[F_DIV], hi = (f[F_HI] + f[F_OFF]) * f[F_MUL] / f[F_DIV];
    if (v < lo || v > hi) {
      throw err('range', {message: message, field: name, value: fmt(v, f[F_DEC]), min: f[F_LO_TXT], max: f[F_HI_TXT]});
    }
  }
  return data;
}

function cborHead(out, major, n) {
  var i;
  if (n < 24) { out.push(major * 32 + n); return; }
  var len = n < 256 ? 1 : n < 65536 ? 2 : n < 4294967296 ? 4 : 8;
  out.push(major * 32 + (len === 1 ? 24 : len === 2 ? 25 : len === 4 ? 26 : 27));
  var bytes = [];
  for (i = 0; i < len; i++) { bytes.unshift(n % 256); n = Math.floor(n / 256); }
  for (i = 0; i < len; i++) { out.push(bytes[i]); }
}

function cborEncodeInto(out, x) {
  var i;
  if (x === null) { out.push(0xF6); } else if (x === true) { out.push(0xF5); } else if (x === false) { out.push(0xF4); } else if (typeof x === 'number') {
    if (x === Math.floor(x) && Math.abs(x) <= MAX_INT) {
      if (x >= 0) { cborHead(out, 0, x); } else { cborHead(out, 1, -1 - x); }
    } else { throw new CborBad('floats are encoded by the node, not by this codec'); }
  } else if (typeof x === 'string') {
    var bytes = [];
    var s = unescape(encodeURIComponent(x));
    for (i = 0; i < s.length; i++) { bytes.push(s.charCodeAt(i)); }
    cborHead(out, 3, bytes.length);
    for (i = 0; i < bytes.length; i++) { out.push(bytes[i]); }
  } else if (Object.prototype.toString.call(x) === '[object Array]') {
    cborHead(out, 4, x.length);
    for (i = 0; i < x.length; i++) { cborEncodeInto(out, x[i]); }
  } else if (typeof x === 'object') {
    var keys = [];
    for (var k in x) { if (has(x, k)) { keys.push(k); } }
    cborHead(out, 5, keys.length);
    for (i = 0; i < keys.length; i++) { cborEncodeInto(out, keys[i]); cborEncodeInto(out, x[keys[i]]); }
  } else { throw new CborBad('cannot encode ' + typeof x); }
}

function cborEncode(x) {
  var out = [];
  try { cborEncodeInto(out, x); } catch (e) {
    if (e instanceof CborBad) { throw err('cbor', {reason: e.reason}); }
    throw e;
  }
  return out;
}

if (typeof module !== 'undefined' && module.exports) {
  module.exports = {decodeUplink: decodeUplink, decodeDownlink: decodeDownlink, encodeDownlink: encodeDownlink,
    encodeUplink: encodeUplink, SPEC: SPEC};
}
