// Uploads one file with tus-js-client under node, for tests/test_tus_clients.py.
// Usage: node tus_js_upload.js '<json>' where the JSON has
//   endpoint, file, options (passed to tus.Upload as they are), and optionally
//   stream (read the file as a stream: needed for uploadLengthDeferred),
//   pauseMs (wait before each request, so that a test can act mid-upload),
//   abortAtBytes (call abort(true), i.e. terminate, once that many bytes are sent).
// Prints one JSON line per event: {"event": "url" | "response" | "success" | "error" | "aborted", ...}.
'use strict'

const fs = require('fs')
const { PassThrough } = require('stream')
const tus = require('tus-js-client')

const config = JSON.parse(process.argv[2])
const say = (event, fields) => console.log(JSON.stringify({ event, ...fields }))

// A stream for uploadLengthDeferred: the client does not know its size. (Not fs.createReadStream:
// tus-js-client 4.3.1 waits forever for the last chunk of a file stream whose end it sees late,
// its issue #779; a PassThrough ended at once does not meet that.)
function streamOf(data) {
  const stream = new PassThrough()
  stream.end(data)
  return stream
}

const data = fs.readFileSync(config.file)
const input = config.stream ? streamOf(data) : data
let aborted = false

const upload = new tus.Upload(input, {
  endpoint: config.endpoint,
  ...config.options,
  onUploadUrlAvailable() {
    say('url', { url: upload.url })
  },
  onBeforeRequest(req) {
    if (!config.pauseMs) return undefined
    return new Promise((resolve) => setTimeout(resolve, config.pauseMs))
  },
  onAfterResponse(req, res) {
    say('response', { method: req.getMethod(), status: res.getStatus() })
  },
  onProgress(sent) {
    if (config.abortAtBytes && sent >= config.abortAtBytes && !aborted) {
      aborted = true
      upload.abort(true).then(
        () => say('aborted', { url: upload.url }),
        (err) => say('error', { message: String(err) }),
      )
    }
  },
  onSuccess() {
    say('success', { url: upload.url })
  },
  onError(err) {
    say('error', { message: String(err) })
    process.exitCode = 1
  },
})
upload.start()
