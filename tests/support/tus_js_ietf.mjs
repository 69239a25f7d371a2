// Runs tus-js-client (package.json) under node in one of its IETF draft modes.
// argv[2] is a JSON object: {endpoint, file, protocol, chunkSize, uploadUrl, stopAfterChunks,
// terminateAfterChunks, uploadDataDuringCreation}. Prints one JSON line: {ok, url, error}.
import fs from 'node:fs'
import { Upload } from 'tus-js-client'

const args = JSON.parse(process.argv[2])
const data = fs.readFileSync(args.file)
let chunks = 0

const upload = new Upload(data, {
  endpoint: args.endpoint,
  uploadUrl: args.uploadUrl ?? null,
  protocol: args.protocol,
  chunkSize: args.chunkSize ?? Number.POSITIVE_INFINITY,
  retryDelays: [0, 200, 500, 1000],
  uploadDataDuringCreation: args.uploadDataDuringCreation ?? false,
  metadata: { filename: 'from-tus-js.bin' },
  onChunkComplete() {
    chunks += 1
    if (args.stopAfterChunks === chunks) {
      upload.abort(false).then(() => finish({ ok: false, url: upload.url, stopped: true }))
    } else if (args.terminateAfterChunks === chunks) {
      upload.abort(true).then(() => finish({ ok: false, url: upload.url, terminated: true }))
    }
  },
  onSuccess() {
    finish({ ok: true, url: upload.url, chunks })
  },
  onError(error) {
    finish({ ok: false, url: upload.url, error: String(error) })
  },
})

function finish(result) {
  process.stdout.write(JSON.stringify(result) + '\n')
  process.exit(0)
}

upload.start()
