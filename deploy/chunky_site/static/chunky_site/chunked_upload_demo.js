/*
 * A page for django-chunked-upload, written the way that package's demo page is:
 * jQuery-File-Upload posts multipart chunks to the upload URL with the CSRF token
 * and, from the second chunk on, the upload_id in its formData; spark-md5 hashes
 * the file; when the last chunk is in, the upload_id and the md5 are posted to the
 * complete URL. Nothing here knows it talks to chunky_redis.
 *
 * Resuming uses only what django-chunked-upload's protocol offers: the upload_id and
 * the offset of the last answer, kept in localStorage; a chunk sent from a stale
 * offset is refused with a 400 carrying the server's `offset`, and the page goes on
 * from there.
 */
(function ($, SparkMD5) {
  'use strict';

  var page = $('#chunked-demo');
  var UPLOAD_URL = page.data('upload-url');
  var COMPLETE_URL = page.data('complete-url');
  var CHUNK_SIZE = parseInt(page.data('chunk-size'), 10);
  var STORAGE_KEY = 'chunked-upload-demo.v1';
  var csrf = $("input[name='csrfmiddlewaretoken']")[0].value;
  var form_data = [{ name: 'csrfmiddlewaretoken', value: csrf }];
  var md5 = null; // a Promise of the file's md5
  var current = null; // jQuery-File-Upload's data of the file being sent
  var corrections = 0; // offset corrections in a row (a stuck server must not loop us)

  function fileKey(file) {
    return [file.name, file.size, file.lastModified].join('|');
  }

  function remembered(file) {
    try { return (JSON.parse(localStorage.getItem(STORAGE_KEY)) || {})[fileKey(file)] || null; } catch (e) { return null; }
  }

  function remember(file, value) {
    var all;
    try { all = JSON.parse(localStorage.getItem(STORAGE_KEY)) || {}; } catch (e) { all = {}; }
    if (value) { all[fileKey(file)] = value; } else { delete all[fileKey(file)]; }
    try { localStorage.setItem(STORAGE_KEY, JSON.stringify(all)); } catch (e) { /* private mode */ }
  }

  function calculate_md5(file, chunk_size) {
    return new Promise(function (resolve, reject) {
      var chunks = Math.max(1, Math.ceil(file.size / chunk_size));
      var current_chunk = 0;
      var spark = new SparkMD5.ArrayBuffer();
      function read_next_chunk() {
        var reader = new FileReader();
        reader.onload = function (e) {
          spark.append(e.target.result); // append chunk
          current_chunk++;
          if (current_chunk < chunks) { read_next_chunk(); } else { resolve(spark.end()); }
        };
        reader.onerror = function () { reject(reader.error); };
        var start = current_chunk * chunk_size;
        var end = Math.min(start + chunk_size, file.size);
        reader.readAsArrayBuffer(file.slice(start, end));
      }
      read_next_chunk();
    });
  }

  function upload_id() {
    return form_data.length > 1 ? form_data[1].value : null;
  }

  function setUploadId(id) {
    form_data.splice(1);
    if (id) { form_data.push({ name: 'upload_id', value: id }); }
    $('#transfer').attr('data-upload-id', id || '');
  }

  function setState(state, message) {
    $('#transfer').attr('data-state', state);
    $('#state-message').text(message || '');
    $('#resume').prop('hidden', state !== 'interrupted');
  }

  function showProgress(loaded, total) {
    var progress = total ? Math.floor((loaded / total) * 100) : 100;
    $('#bar').css('width', progress + '%');
    $('#progress').text(Array(progress).join('=') + '> ' + progress + '%');
  }

  function send(data, offset) {
    var file = data.files[0];
    showProgress(offset, file.size);
    if (file.size && offset >= file.size) { return complete(file, upload_id()); } // only the md5 was missing
    data.uploadedBytes = offset;
    setState('uploading', offset ? 'Resuming at byte ' + offset + '.' : '');
    data.submit();
  }

  function complete(file, id) {
    setState('completing', 'Sending the md5…');
    md5.then(function (digest) {
      $.ajax({
        type: 'POST',
        url: COMPLETE_URL,
        data: { csrfmiddlewaretoken: csrf, upload_id: id, md5: digest },
        dataType: 'json',
        success: function (answer) {
          remember(file, null);
          $('#messages').append($('<p>').text(JSON.stringify(answer)));
          $('#transfer').attr('data-md5', digest);
          setState('complete', "You successfully uploaded '" + file.name + "' (" + answer.offset + ' bytes)!');
        },
        error: function (xhr) {
          var body = xhr.responseJSON || {};
          setState('failed', 'Completion failed: ' + (body.detail || xhr.statusText));
        }
      });
    });
  }

  $('#resume').on('click', function () {
    var saved = current && remembered(current.files[0]);
    if (current) { send(current, saved ? saved.offset : 0); }
  });

  $('#chunked_upload').fileupload({
    url: UPLOAD_URL,
    dataType: 'json',
    maxChunkSize: CHUNK_SIZE,
    formData: form_data,
    add: function (e, data) { // Called before starting upload
      var file = data.files[0];
      var saved = remembered(file);
      current = data;
      corrections = 0;
      $('#messages').empty();
      $('#transfer').prop('hidden', false);
      $('#file-name').text(file.name);
      // A file uploaded before (this tab, or before a reload): go on with its upload_id.
      setUploadId(saved ? saved.upload_id : null);
      md5 = calculate_md5(file, CHUNK_SIZE);
      send(data, saved ? saved.offset : 0);
    },
    chunkdone: function (e, data) { // Called after uploading each chunk
      if (!upload_id()) { setUploadId(data.result.upload_id); }
      remember(data.files[0], { upload_id: data.result.upload_id, offset: data.result.offset });
      corrections = 0;
      $('#messages').append($('<p>').text(JSON.stringify(data.result)));
      showProgress(data.result.offset, data.files[0].size);
    },
    done: function (e, data) { // Called when the file has completely uploaded
      var file = data.files[0];
      if (!upload_id()) { setUploadId(data.result.upload_id); }
      remember(file, { upload_id: data.result.upload_id, offset: data.result.offset });
      showProgress(file.size, file.size);
      complete(file, data.result.upload_id);
    },
    fail: function (e, data) {
      var xhr = data.jqXHR || {};
      var body = xhr.responseJSON || {};
      if (xhr.status === 400 && typeof body.offset === 'number' && corrections < 3) {
        // The server has another offset than we remembered (an answer was lost): follow it.
        corrections += 1;
        remember(data.files[0], { upload_id: upload_id(), offset: body.offset });
        return setTimeout(function () { send(data, body.offset); }, 0);
      }
      if (xhr.status === 404 || xhr.status === 410) {
        remember(data.files[0], null);
        setUploadId(null);
        return setState('failed', 'The upload is gone from the server (' + xhr.status + '). Choose the file again to start over.');
      }
      if (!xhr.status) {
        var saved = remembered(data.files[0]);
        var at = saved ? saved.offset : 0;
        return setState('interrupted', 'Interrupted at byte ' + at + ' of ' + data.files[0].size + '. Press Resume when the connection is back.');
      }
      setState('failed', 'Error ' + xhr.status + ': ' + (body.detail || xhr.statusText));
    }
  });
}(window.jQuery, window.SparkMD5));
