// The validators. A payload is accepted here only if a Python listener of
// common-events accepts it too: the JSON Schemas above say most of it, and what JSON
// Schema cannot say about the wire (how a number was written, how deep the JSON nests,
// strings that are not Unicode, dates that do not exist) is checked below the way
// pydantic's JSON parser checks it.

// pydantic refuses JSON nested deeper than this (object and array levels together).
const MAX_DEPTH = 201

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:Z|([+-])(\d{2}):(\d{2}))$/
const NUMBER_CHARS = /[0-9eE.+-]/
const FRACTION_OR_EXPONENT = /[.eE]/

function daysInMonth (year, month) {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28
  return [4, 6, 9, 11].includes(month) ? 30 : 31
}

// An ISO-8601 date-time with an offset that names a real instant, which in UTC falls
// in the years 1 to 9999 (all a Python datetime holds). No leap second: Python has none.
function isDateTime (text) {
  const match = DATE_TIME.exec(text)
  if (match === null) return false
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number)
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) {
    return false
  }
  if (hour > 23 || minute > 59 || second > 59) return false
  let offsetMinutes = 0
  if (match[7] !== undefined) {
    const hours = Number(match[8])
    const minutes = Number(match[9])
    if (hours > 23 || minutes > 59) return false
    offsetMinutes = (match[7] === '-' ? -1 : 1) * (hours * 60 + minutes)
  }
  const instant = new Date(0)
  instant.setUTCFullYear(year, month - 1, day)
  instant.setUTCHours(hour, minute - offsetMinutes, second, 0)
  const utcYear = instant.getUTCFullYear()
  return utcYear >= 1 && utcYear <= 9999
}

const ajv = new Ajv2020({ allErrors: true, strict: true, formats: { 'date-time': isDateTime } })
ajv.addVocabulary(['x-subject'])

function pointer (path) {
  return path.map((key) => '/' + String(key).replace(/~/g, '~0').replace(/\//g, '~1')).join('')
}

// The first string (or object key) that is not well-formed Unicode: a lone surrogate
// cannot be written as UTF-8, and Python refuses it in a payload.
function illFormedString (value, path) {
  if (typeof value === 'string') return LONE_SURROGATE.test(value) ? path : null
  if (value === null || typeof value !== 'object') return null
  const entries = Array.isArray(value) ? value.entries() : Object.entries(value)
  for (const [key, item] of entries) {
    if (typeof key === 'string' && LONE_SURROGATE.test(key)) return path.concat([key])
    const found = illFormedString(item, path.concat([key]))
    if (found !== null) return found
  }
  return null
}

function toValidationError (error) {
  let path = error.instancePath
  if (error.keyword === 'required') path += pointer([error.params.missingProperty])
  return { path, keyword: error.keyword, message: error.message }
}

function makeValidator (subject) {
  const check = ajv.compile(SCHEMAS[subject])
  const validate = function (data) {
    let errors = check(data) ? [] : check.errors.map(toValidationError)
    if (errors.length === 0) {
      const bad = illFormedString(data, [])
      if (bad !== null) {
        errors = [{ path: pointer(bad), keyword: 'unicode', message: 'must be well-formed Unicode (a lone surrogate is not)' }]
      }
    }
    validate.errors = errors.length === 0 ? null : errors
    return errors.length === 0
  }
  validate.errors = null
  return validate
}

class InvalidEventError extends Error {
  constructor (subject, errors) {
    const reasons = errors.map((error) => (error.path || 'the payload') + ' ' + error.message)
    super('invalid ' + subject + ' event: ' + reasons.join('; '))
    this.name = 'InvalidEventError'
    this.subject = subject
    this.errors = errors
  }
}

// Walks JSON text that JSON.parse accepted. Returns how deep it nests and, for every
// number written with a fraction or an exponent (1.0, 1e0), its path: JSON.parse makes
// 1.0 and 1 the same value, Python does not take 1.0 for an integer.
function scanJson (text) {
  const open = []
  const path = []
  const fractions = new Map()
  let depth = 0
  let i = 0
  while (i < text.length) {
    const c = text[i]
    if (c === '{' || c === '[') {
      open.push(c)
      path.push(c === '[' ? 0 : null)
      depth = Math.max(depth, open.length)
      i += 1
    } else if (c === '}' || c === ']') {
      open.pop()
      path.pop()
      i += 1
    } else if (c === ',') {
      if (open[open.length - 1] === '[') path[path.length - 1] += 1
      i += 1
    } else if (c === '"') {
      let end = i + 1
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1
      const token = text.slice(i, end + 1)
      i = end + 1
      while (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r') i += 1
      if (text[i] === ':') {
        path[path.length - 1] = JSON.parse(token)
        i += 1
      }
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      let end = i + 1
      while (end < text.length && NUMBER_CHARS.test(text[end])) end += 1
      // A key repeated in one object: the last one counts, as in JSON.parse and Python.
      const key = JSON.stringify(path)
      if (FRACTION_OR_EXPONENT.test(text.slice(i, end))) fractions.set(key, path.slice())
      else fractions.delete(key)
      i = end
    } else {
      i += 1
    }
  }
  return { depth, fractions: Array.from(fractions.values()) }
}

function schemaAt (schema, path) {
  let node = schema
  for (const key of path) {
    if (node === undefined || node === null || typeof node !== 'object') return undefined
    if (typeof key === 'number') node = node.items
    else node = node.properties !== undefined && Object.hasOwn(node.properties, key) ? node.properties[key] : undefined
  }
  return node
}

function valueAt (value, path) {
  let node = value
  for (const key of path) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, key)) return undefined
    node = node[key]
  }
  return node
}

function onlyInteger (schema) {
  const type = schema === undefined ? undefined : schema.type
  return type === 'integer' || (Array.isArray(type) && type.includes('integer') && !type.includes('number'))
}

function parseEventData (subject, payload) {
  if (typeof subject !== 'string' || !Object.hasOwn(validators, subject)) {
    throw new TypeError('unknown subject ' + JSON.stringify(subject) + '; known: ' + SUBJECTS.join(', '))
  }
  const invalid = (keyword, message, path = '') => new InvalidEventError(subject, [{ path, keyword, message }])
  const validate = validators[subject]
  let text = payload
  if (payload instanceof Uint8Array) {
    try {
      text = UTF8.decode(payload)
    } catch (error) {
      throw invalid('utf-8', 'is not UTF-8 text')
    }
  } else if (typeof payload !== 'string') {
    throw new TypeError('the payload must be a string or bytes (a Buffer or Uint8Array)')
  }
  let data
  try {
    data = JSON.parse(text)
  } catch (error) {
    throw invalid('json', 'is not JSON: ' + error.message)
  }
  const scanned = scanJson(text)
  if (scanned.depth > MAX_DEPTH) {
    throw invalid('json', 'nests deeper than ' + MAX_DEPTH + ' levels')
  }
  if (!validate(data)) throw new InvalidEventError(subject, validate.errors)
  const schema = SCHEMAS[subject]
  for (const path of scanned.fractions) {
    if (typeof valueAt(data, path) === 'number' && onlyInteger(schemaAt(schema, path))) {
      throw invalid('type', 'must be an integer written without a fraction or an exponent', pointer(path))
    }
  }
  return data
}

function deepFreeze (value) {
  if (value !== null && typeof value === 'object') {
    for (const item of Object.values(value)) deepFreeze(item)
    Object.freeze(value)
  }
  return value
}

const SUBJECTS = Object.freeze(Object.values(Subjects))
const schemas = deepFreeze(SCHEMAS)
const validators = Object.freeze(Object.fromEntries(SUBJECTS.map((subject) => [subject, makeValidator(subject)])))
