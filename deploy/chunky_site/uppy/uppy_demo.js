/*
 * The Uppy demo page: Uppy's Dashboard sends files to the tus 1.0 endpoint with
 * @uppy/tus (tus-js-client underneath). Built into one file by esbuild
 * (`npm run build-demo`, run by `make run` and `make test` after `npm ci`), since
 * Uppy ships as ES modules with dependencies a browser cannot load one by one.
 *
 * Resuming is tus-js-client's: it asks the server for the offset (HEAD) and goes
 * on from there, after a failed request (Retry) and after a reload (the upload
 * URL is kept in localStorage under the file's fingerprint).
 */
import Uppy from '@uppy/core';
import Dashboard from '@uppy/dashboard';
import Tus from '@uppy/tus';
import '@uppy/core/css/style.min.css';
import '@uppy/dashboard/css/style.min.css';

const page = document.getElementById('uppy-demo');
const state = document.getElementById('uppy-state');

function say(name, text) {
  state.setAttribute('data-state', name);
  state.textContent = text;
}

const uppy = new Uppy({ autoProceed: true, restrictions: { maxNumberOfFiles: 1 } })
  .use(Dashboard, {
    inline: true,
    target: '#uppy-dashboard',
    height: 360,
    proudlyDisplayPoweredByUppy: false,
    showProgressDetails: true,
  })
  .use(Tus, {
    endpoint: page.dataset.endpoint,
    chunkSize: parseInt(page.dataset.chunkSize, 10),
    // A few quick retries, then the upload stops with an error and a Retry button.
    retryDelays: [0, 300, 600],
  });

uppy.on('upload', () => say('uploading', 'Uploading…'));
uppy.on('upload-progress', (file, progress) => {
  state.setAttribute('data-bytes', String(progress.bytesUploaded));
});
uppy.on('upload-error', (file, error) => {
  say('interrupted', `Interrupted: ${error.message.split('\n')[0]} Press Retry (or choose the file again after a reload) to resume.`);
});
uppy.on('upload-success', (file, response) => {
  page.setAttribute('data-upload-url', response.uploadURL);
  say('complete', `Complete: ${file.name} (${file.size} bytes) is at ${response.uploadURL}`);
});

window.chunkyUppy = uppy; // for trying things out from the console
