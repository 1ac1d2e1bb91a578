/**
 * The `disk_usage` handler, in JavaScript: the fullest each mount point has
 * been.
 *
 * A `disk_usage` payload is a JSON object that maps mount points to the
 * fraction of their space in use, a number in 0..=1:
 *
 *     {"/": 0.71, "/home": 0.42}
 *
 * The aggregate keeps the largest fraction seen for each mount point and the
 * number of payloads applied, and renders as
 *
 *     {"max": {"/": 0.71, "/home": 0.42}, "count": 2}
 *
 * (without the spaces). A payload is applied whole or not at all: one bad
 * fraction refuses the payload, which then neither changes a maximum nor
 * counts. An empty object is a valid payload: it changes no maximum, but
 * counts.
 *
 * The state is UTF-8 JSON, `{"v":1,"max":{...},"count":n}`, written the same
 * way by every language's version of this handler, so that any of them can
 * carry on from a state another wrote. Mount points are sorted by code point
 * and numbers are written as the shortest decimal that reads back to the
 * same value, never in exponent form and always with a fractional part
 * (`1.0`).
 *
 * Build it into a component with `build.sh`; see README.md.
 */

/** What the handler says about itself (`metadata`). */
const NAME = 'disk_usage';
const VERSION = '0.1.0';
/** The payload type handled, as it arrives in `json-batch.kind`. */
const KIND = 'disk_usage';

/** The version of the state's layout, its `"v"` field. */
const STATE_VERSION = 1;
/** The fields of a state. */
const STATE_FIELDS = new Set(['v', 'max', 'count']);

/** The reason given for each payload of a batch of another type. */
const UNSUPPORTED_TYPE = 'unsupported type';

/**
 * The largest count that every reader of the state holds exactly; the count
 * stops there.
 */
const MAX_COUNT = Number.MAX_SAFE_INTEGER;

/**
 * The deepest nesting of arrays and objects read: a payload is one level
 * deep and a state two. (The engine's parser would cope with more; the
 * limit is the same in every version of this handler, so that they all
 * refuse the same payloads.)
 */
const MAX_DEPTH = 128;

/**
 * Names quoted in a reason are cut to this many characters, so that a
 * reason stays short whatever the payload holds.
 */
const MAX_QUOTED_CHARS = 64;

/** A payload, or a state, that cannot be read; the message says why. */
class Invalid extends Error {}

// ---------------------------------------------------------------------------
// JSON in and out

/** How often `char` occurs in `text`, counted up to `limit + 1`. */
function countUpTo(text, char, limit) {
  let count = 0;
  for (let i = text.indexOf(char); i >= 0 && count <= limit; i = text.indexOf(char, i + 1)) {
    count++;
  }
  return count;
}

/**
 * Whether arrays and objects nest deeper than `MAX_DEPTH` in JSON text.
 * Brackets in strings do not count.
 */
function tooDeep(text) {
  if (countUpTo(text, '[', MAX_DEPTH) + countUpTo(text, '{', MAX_DEPTH) <= MAX_DEPTH) {
    return false;
  }
  const brackets = text
    .replace(/\\[\s\S]/g, '')
    .replace(/"[^"]*"/g, '')
    .replace(/[^[\]{}]+/g, '');
  let depth = 0;
  for (const bracket of brackets) {
    depth += bracket === '[' || bracket === '{' ? 1 : -1;
    if (depth > MAX_DEPTH) {
      return true;
    }
  }
  return false;
}

/** Reads JSON text. */
function parseJson(text) {
  if (tooDeep(text)) {
    throw new Invalid(`nested deeper than ${MAX_DEPTH} levels`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new Invalid('not valid json');
  }
}

/** Whether a parsed JSON value is an object (not an array, not null). */
function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Writes a finite number as a JSON number.
 *
 * The digits are the shortest that read back to the same value (`String`),
 * written out in full rather than in exponent form, and an integral value
 * keeps a fractional part (`1.0`, not `1`).
 */
function formatNumber(value) {
  let text = String(value);
  const e = text.indexOf('e');
  if (e >= 0) {
    const mantissa = text.slice(0, e);
    const sign = mantissa.startsWith('-') ? '-' : '';
    const [whole, fraction = ''] = mantissa.replace('-', '').split('.');
    const digits = whole + fraction;
    // Where the decimal point falls in `digits`.
    const point = whole.length + Number(text.slice(e + 1));
    if (point <= 0) {
      text = `${sign}0.${'0'.repeat(-point)}${digits}`;
    } else if (point >= digits.length) {
      text = sign + digits + '0'.repeat(point - digits.length);
    } else {
      text = `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
    }
  }
  if (!text.includes('.')) {
    text += '.0';
  }
  return text;
}

/** Quotes a name as a JSON string for a reason, cut to a short length. */
function quote(name) {
  const chars = Array.from(name);
  if (chars.length > MAX_QUOTED_CHARS) {
    name = chars.slice(0, MAX_QUOTED_CHARS).join('') + '\u2026';
  }
  return JSON.stringify(name);
}

/**
 * Whether a string holds only Unicode scalar values.
 *
 * JSON can spell a lone surrogate (`"\ud800"`), which no UTF-8 text holds:
 * such a name could not be written to the state as it is.
 */
function isWellFormed(name) {
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(name);
}

/**
 * Orders strings by code point, as UTF-8 bytes sort and as every version of
 * this handler writes its state. (JavaScript's own order compares UTF-16
 * code units, which differs for characters above U+FFFF.)
 */
function byCodePoint(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i);
    const y = b.codePointAt(i);
    if (x !== y) {
      return x < y ? -1 : 1;
    }
    if (x > 0xffff) {
      i++;
    }
  }
  return a.length - b.length;
}

/**
 * Sorts names by code point (see `byCodePoint`), in place. Where no name
 * holds a character above U+FFFF, the two orders agree, and the engine's own
 * sort is much the faster.
 */
function sortNames(names) {
  return /[\uD800-\uDFFF]/.test(names.join('')) ? names.sort(byCodePoint) : names.sort();
}

// ---------------------------------------------------------------------------
// Usage: one payload, or the maxima of a state

/**
 * Checks a parsed mapping of mount point to used fraction.
 *
 * Returns it as a `Map`; throws `Invalid` naming the first mount point (in
 * sorted order) whose fraction is wrong.
 */
function readUsage(usage) {
  if (!isObject(usage)) {
    throw new Invalid('not a json object');
  }
  const checked = new Map();
  for (const mount of sortNames(Object.keys(usage))) {
    if (!isWellFormed(mount)) {
      throw new Invalid('mount point is not valid unicode');
    }
    const fraction = usage[mount];
    if (typeof fraction !== 'number') {
      throw new Invalid(`mount ${quote(mount)}: not a number`);
    }
    if (!Number.isFinite(fraction)) {
      throw new Invalid(`mount ${quote(mount)}: not a finite number`);
    }
    if (!(fraction >= 0 && fraction <= 1)) {
      throw new Invalid(`mount ${quote(mount)}: ${formatNumber(fraction)} is outside 0..=1`);
    }
    // Adding zero turns -0 into 0, so that zero is written one way.
    checked.set(mount, fraction + 0);
  }
  return checked;
}

/** The largest used fraction of each mount point, and the payloads applied. */
class Aggregate {
  constructor(maxima = new Map(), count = 0) {
    this.maxima = maxima;
    this.count = count;
  }

  /**
   * Reads state bytes written by `encode`; empty bytes are empty.
   *
   * Throws `Invalid` when the bytes are not such a state.
   */
  static decode(state) {
    if (state.length === 0) {
      return new Aggregate();
    }
    let text;
    try {
      // `ignoreBOM` keeps a byte order mark, which then is not JSON.
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(state);
    } catch {
      throw new Invalid('not utf-8');
    }
    const document = parseJson(text);
    if (!isObject(document)) {
      throw new Invalid('not a json object');
    }
    if (!Object.hasOwn(document, 'v')) {
      throw new Invalid('no "v" field');
    }
    const version = document.v;
    if (version !== STATE_VERSION) {
      if (Number.isInteger(version)) {
        throw new Invalid(`version ${version} is not supported`);
      }
      throw new Invalid('"v" is not a version number');
    }
    for (const field of sortNames(Object.keys(document))) {
      if (!STATE_FIELDS.has(field)) {
        throw new Invalid(`unknown field ${quote(field)}`);
      }
    }
    if (!Object.hasOwn(document, 'max')) {
      throw new Invalid('no "max" field');
    }
    if (!isObject(document.max)) {
      throw new Invalid('"max" is not an object');
    }
    const maxima = readUsage(document.max);
    if (!Object.hasOwn(document, 'count')) {
      throw new Invalid('no "count" field');
    }
    const count = document.count;
    if (!(Number.isInteger(count) && count >= 0 && count <= MAX_COUNT)) {
      throw new Invalid('"count" is not a whole number of payloads');
    }
    return new Aggregate(maxima, count);
  }

  /** Applies one checked payload (see `readUsage`). */
  add(usage) {
    for (const [mount, fraction] of usage) {
      const max = this.maxima.get(mount);
      if (max === undefined || fraction > max) {
        this.maxima.set(mount, fraction);
      }
    }
    this.count = Math.min(this.count + 1, MAX_COUNT);
  }

  /** The maxima as a JSON object, mount points sorted. */
  maximaJson() {
    const entries = sortNames([...this.maxima.keys()]).map(
      (mount) => `${JSON.stringify(mount)}:${formatNumber(this.maxima.get(mount))}`,
    );
    return `{${entries.join(',')}}`;
  }

  /** Writes the state for the host to keep. */
  encode() {
    const text = `{"v":${STATE_VERSION},"max":${this.maximaJson()},"count":${this.count}}`;
    return new TextEncoder().encode(text);
  }

  /** Renders the aggregate as a JSON object, for operators. */
  render() {
    return `{"max":${this.maximaJson()},"count":${this.count}}`;
  }
}

/**
 * `Aggregate.decode`, with a failure thrown as the call's error: a value
 * thrown from a function that returns a `result` is its `err`.
 */
function readState(state) {
  try {
    return Aggregate.decode(state);
  } catch (why) {
    if (why instanceof Invalid) {
      throw `cannot read state: ${why.message}`;
    }
    throw why;
  }
}

/** The number of payloads in a batch of any type. */
function payloadCount(batch) {
  switch (batch.tag) {
    case 'cpu-usage':
      return batch.val.lengths.length;
    case 'json':
      return batch.val.values.length;
    default:
      // load-avg and last-kernel-upgrade: one list entry per payload.
      return batch.val.length;
  }
}

// ---------------------------------------------------------------------------
// The exported interface

/** The `handler` interface of the `plugin` world. */
export const handler = {
  metadata() {
    return { name: NAME, version: VERSION, types: [KIND] };
  },

  apply(state, batch) {
    const aggregate = readState(state);
    const rejected = [];
    if (!(batch.tag === 'json' && batch.val.kind === KIND)) {
      for (let index = 0; index < payloadCount(batch); index++) {
        rejected.push({ index, reason: UNSUPPORTED_TYPE });
      }
      return { state: aggregate.encode(), rejected };
    }

    batch.val.values.forEach((text, index) => {
      let usage;
      try {
        // A byte order mark before the text never reaches here: the runtime
        // drops it when it receives the string (as RFC 8259 allows), and
        // every version of this handler ignores it alike.
        usage = readUsage(parseJson(text));
      } catch (why) {
        if (!(why instanceof Invalid)) {
          throw why;
        }
        rejected.push({ index, reason: why.message });
        return;
      }
      aggregate.add(usage);
    });
    return { state: aggregate.encode(), rejected };
  },

  render(state) {
    return readState(state).render();
  },
};
