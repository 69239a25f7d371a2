/*
 * The chunky_redis demo page: jQuery-File-Upload (blueimp) sends each file in
 * chunks with PUT; the first chunk goes to the upload URL and creates the
 * upload, the next ones go to <upload URL><upload_id>/. spark-md5 hashes the
 * bytes the server has acknowledged, chunk by chunk, so completion only has
 * to finish the digest. Upload ids are kept in localStorage: choosing the
 * same file again (after a reload, a crash, a lost connection) asks the
 * server for its offset and continues from there.
 */
(function ($, SparkMD5) {
  'use strict';

  var page = $('#chunky');
  var BASE_URL = page.data('upload-url');
  var CHUNK_SIZE = parseInt(page.data('chunk-size'), 10);
  var MAX_BYTES = parseInt(page.data('max-bytes'), 10) || null;
  var CSRF_TOKEN = page.data('csrf-token');
  var STORAGE_KEY = 'chunky-redis.uploads.v1';
  var READ_SIZE = 4 << 20; // bytes read from the local file per hashing step
  var MAX_RETRIES = 8; // consecutive failures before we stop and offer a Retry button

  // -- formatting ------------------------------------------------------------

  function formatBytes(n) {
    if (n == null || isNaN(n)) { return ''; }
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? n : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)) + ' ' + units[i];
  }

  function formatRate(bytesPerSecond) {
    return bytesPerSecond > 0 ? formatBytes(bytesPerSecond) + '/s' : '';
  }

  function formatSeconds(s) {
    if (s < 60) { return s.toFixed(s < 10 ? 1 : 0) + ' s'; }
    return Math.floor(s / 60) + ' min ' + Math.round(s % 60) + ' s';
  }

  // "the file is 3.2 GiB, over the limit of 2 GiB", in bytes when the rounded sizes look alike.
  function sizeAgainst(size, limit) {
    var a = formatBytes(size);
    var b = formatBytes(limit);
    if (a === b) {
      a = size.toLocaleString('en') + ' bytes';
      b = limit.toLocaleString('en') + ' bytes';
    }
    return 'the file is ' + a + ', over the limit of ' + b;
  }

  function percent(part, whole) {
    return whole ? Math.floor((100 * part) / whole) : 100;
  }

  // RFC 6266/5987: a UTF-8 file name in Content-Disposition.
  function contentDisposition(name) {
    var encoded = encodeURIComponent(name).replace(/['()*]/g, function (c) {
      return '%' + c.charCodeAt(0).toString(16).toUpperCase();
    });
    return "attachment; filename*=UTF-8''" + encoded;
  }

  // -- remembered uploads ------------------------------------------------------

  function fileKey(file) {
    return [file.name, file.size, file.lastModified].join('|');
  }

  var memory = {
    all: function () {
      try { return JSON.parse(window.localStorage.getItem(STORAGE_KEY)) || {}; } catch (e) { return {}; }
    },
    get: function (key) { return this.all()[key] || null; },
    put: function (key, value) {
      var all = this.all();
      all[key] = value;
      try { window.localStorage.setItem(STORAGE_KEY, JSON.stringify(all)); } catch (e) { /* private mode */ }
    },
    forget: function (key) {
      var all = this.all();
      delete all[key];
      try { window.localStorage.setItem(STORAGE_KEY, JSON.stringify(all)); } catch (e) { /* private mode */ }
    }
  };

  // -- JSON requests outside the widget ----------------------------------------

  function api(method, url, payload) {
    return new Promise(function (resolve, reject) {
      $.ajax({
        url: url,
        method: method,
        data: payload === undefined ? undefined : JSON.stringify(payload),
        contentType: 'application/json',
        dataType: 'json',
        cache: false,
        headers: { 'X-CSRFToken': CSRF_TOKEN }
      }).done(function (body) { resolve(body); }).fail(function (xhr) { reject(xhr); });
    });
  }

  function retryAfter(xhr) {
    var value = parseFloat(xhr.getResponseHeader && xhr.getResponseHeader('Retry-After'));
    return isNaN(value) ? null : value;
  }

  // -- incremental MD5 of a local file -------------------------------------------

  // Hashes the file's bytes in order, up to the offsets it is asked for; the
  // requests queue up so that hashing runs beside the upload, never ahead of
  // what the server acknowledged and never twice over the same bytes.
  function Hasher(file) {
    this.file = file;
    this.spark = new SparkMD5.ArrayBuffer();
    this.hashed = 0;
    this.md5 = null;
    this.queue = Promise.resolve();
  }

  Hasher.prototype.upTo = function (end) {
    var self = this;
    this.queue = this.queue.then(function () { return self._step(end); });
    return this.queue;
  };

  Hasher.prototype._step = function (end) {
    var self = this;
    if (end < self.hashed) { // the server holds fewer bytes than we hashed: start over
      self.spark.reset();
      self.hashed = 0;
      self.md5 = null;
    }
    if (self.hashed >= end) { return Promise.resolve(); }
    var stop = Math.min(end, self.hashed + READ_SIZE);
    return self.file.slice(self.hashed, stop).arrayBuffer().then(function (buffer) {
      self.spark.append(buffer);
      self.hashed = stop;
      return self._step(end);
    });
  };

  Hasher.prototype.digest = function () {
    var self = this;
    return this.upTo(this.file.size).then(function () {
      if (!self.md5) { self.md5 = self.spark.end(); }
      return self.md5;
    });
  };

  // -- one file ------------------------------------------------------------------

  var uploads = {}; // by fileKey
  var template = document.getElementById('file-row');

  function Upload(file, saved) {
    this.file = file; // a File, or what localStorage remembers of one until it is chosen again
    this.key = fileKey(file);
    this.uploadId = saved ? saved.id : null;
    this.offset = 0;
    this.failures = 0;
    this.data = null;
    this.hasher = null;
    this.timer = null;
    this.row = $(template.content.firstElementChild.cloneNode(true));
    this.row.find('.file-name').text(file.name).attr('title', file.name);
    var ext = (file.name.match(/\.([a-z0-9]{1,4})$/i) || [null, 'file'])[1];
    this.row.find('.file-ext').text(ext.toLowerCase());
    this.row.attr('data-name', file.name);
    this.row.find('.btn-retry').on('click', this.retry.bind(this));
    this.row.find('.btn-remove').on('click', this.remove.bind(this));
    $('#files').prepend(this.row);
    $('#transfers').prop('hidden', false);
  }

  Upload.prototype.url = function () {
    return this.uploadId ? BASE_URL + this.uploadId + '/' : BASE_URL;
  };

  Upload.prototype.remember = function () {
    memory.put(this.key, {
      id: this.uploadId, name: this.file.name, size: this.file.size,
      lastModified: this.file.lastModified, saved: Date.now()
    });
  };

  Upload.prototype.forget = function () {
    memory.forget(this.key);
  };

  var LABELS = {
    queued: 'Queued', checking: 'Checking', paused: 'Paused', uploading: 'Uploading',
    retrying: 'Retrying', verifying: 'Finishing', processing: 'Processing', complete: 'Complete', error: 'Failed'
  };

  Upload.prototype.setState = function (state, message) {
    this.state = state;
    this.row.attr('data-state', state);
    this.row.find('.pill').text(LABELS[state] || state);
    this.row.find('.btn-retry').prop('hidden', state !== 'error' || !this.retryable || !this.data);
    if (message !== undefined) { this.say(message); }
    summary.update();
  };

  Upload.prototype.say = function (message) {
    this.row.find('.file-message').text(message || '').prop('hidden', !message);
  };

  Upload.prototype.showBytes = function (loaded, rate) {
    var size = this.file.size;
    this.loaded = loaded;
    this.row.find('.bar-fill').css('width', percent(loaded, size) + '%');
    this.row.find('.file-progress').text(
      loaded >= size ? formatBytes(size) : formatBytes(loaded) + ' of ' + formatBytes(size) + ' · ' + percent(loaded, size) + '%'
    );
    this.row.find('.file-rate').text(rate === undefined ? '' : formatRate(rate));
  };

  // A File was chosen (or dropped) for this upload: continue or begin.
  Upload.prototype.attach = function (file, data) {
    this.file = file;
    this.data = data;
    data.chunky = this;
    this.hasher = new Hasher(file);
    this.failures = 0;
    if (!file.size) { return this.fail('This file is empty: there is nothing to upload.'); }
    if (MAX_BYTES && file.size > MAX_BYTES) {
      return this.fail('Too large: ' + sizeAgainst(file.size, MAX_BYTES) + '.');
    }
    this.start();
  };

  // Ask the server where a remembered upload stands, then act on it.
  Upload.prototype.start = function () {
    var self = this;
    clearTimeout(this.timer);
    if (!this.uploadId) {
      var saved = memory.get(this.key);
      this.uploadId = saved ? saved.id : null;
    }
    if (!this.uploadId) { return this.send(0); }
    this.setState('checking', 'Asking the server how much of this file it already has…');
    api('GET', this.url()).then(function (status) {
      self.failures = 0;
      if (status.status === 'uploading' && status.size === self.file.size) {
        self.showBytes(status.offset);
        if (status.offset >= self.file.size) { return self.finish(); }
        return self.send(status.offset);
      }
      if (status.status === 'processing') { return self.poll(); }
      if (status.status === 'complete') { return self.completed(status); }
      self.restart('The earlier upload ' + (status.status === 'failed' ? 'failed (' + (status.reason || 'unknown reason') + ')' : 'cannot continue') + '; starting over.');
    }, function (xhr) {
      if (xhr.status === 404 || xhr.status === 410) {
        return self.restart('The earlier upload has expired on the server; starting over from the beginning.');
      }
      self.failed(xhr);
    });
  };

  Upload.prototype.restart = function (message) {
    this.forget();
    this.uploadId = null;
    this.send(0, message);
  };

  // Hand the file to the widget, from `offset` on.
  Upload.prototype.send = function (offset, message) {
    if (!this.data) { return this.setState('paused', 'Choose ' + this.file.name + ' again to resume.'); }
    this.offset = offset;
    this.hasher.upTo(offset).catch(this.unreadable.bind(this)); // the prefix the server has, re-read locally
    this.resumedFrom = offset;
    this.sendStarted = this.sendStarted || Date.now();
    this.bytesAtStart = this.bytesAtStart === undefined ? offset : this.bytesAtStart;
    this.data.uploadedBytes = offset;
    this.showBytes(offset);
    this.setState('uploading', message || (offset ? 'Resuming at ' + formatBytes(offset) + ' (' + percent(offset, this.file.size) + '%).' : ''));
    this.data.submit();
  };

  // The server stored every byte up to `offset`.
  Upload.prototype.acknowledge = function (result) {
    if (!this.uploadId && result.upload_id) {
      this.uploadId = result.upload_id;
      this.row.attr('data-upload-id', this.uploadId);
      this.remember();
    }
    this.offset = result.offset;
    this.failures = 0;
    if (this.state === 'retrying') { this.setState('uploading', ''); }
    this.hasher.upTo(result.offset).catch(this.unreadable.bind(this));
  };

  // Every byte is on the server: finish the digest and complete.
  Upload.prototype.finish = function () {
    var self = this;
    this.row.attr('data-upload-id', this.uploadId);
    this.showBytes(this.file.size);
    if (this.sendStarted && !this.sendEnded) { this.sendEnded = Date.now(); }
    this.setState('verifying', 'Finishing the MD5 of the local file…');
    this.hasher.digest().then(function (md5) {
      self.setState('verifying', 'Completing the upload…');
      return api('POST', self.url(), { md5: md5 }).then(function () { self.poll(); }, function (xhr) {
        var body = xhr.responseJSON || {};
        if (body.code === 'already_complete') { return self.poll(); }
        if (body.code === 'checksum_mismatch') {
          self.forget();
          return self.fail('The MD5 computed here does not match the bytes the server received. Was the file changed while it was being sent? Choose it again to start over.');
        }
        self.failed(xhr);
      });
    }, this.unreadable.bind(this));
  };

  // The worker verifies and stores the file: wait for it.
  Upload.prototype.poll = function () {
    var self = this;
    var delay = 300;
    this.setState('processing', 'Verifying and storing the file on the server…');
    var tick = function () {
      api('GET', self.url()).then(function (status) {
        if (status.status === 'complete') { return self.completed(status); }
        if (status.status === 'failed') {
          self.forget();
          return self.fail('The server could not finish this file: ' + (status.reason || 'unknown reason') + '.');
        }
        if (status.status === 'uploading') { return self.start(); } // completion did not go through
        delay = Math.min(delay * 1.5, 3000);
        self.timer = setTimeout(tick, delay);
      }, function (xhr) { self.failed(xhr); });
    };
    tick();
  };

  Upload.prototype.completed = function (status) {
    this.forget();
    this.row.attr('data-upload-id', status.upload_id);
    this.showBytes(status.size);
    var elapsed = this.sendEnded ? (this.sendEnded - this.sendStarted) / 1000 : 0;
    var sent = status.size - (this.bytesAtStart || 0);
    var note = '';
    if (elapsed > 0 && this.bytesAtStart !== undefined) {
      note = 'Sent ' + formatBytes(sent) + ' in ' + formatSeconds(elapsed) + ' · ' + formatRate(sent / elapsed);
      if (this.bytesAtStart > 0) { note += ' · resumed at ' + percent(this.bytesAtStart, status.size) + '%'; }
    }
    this.row.find('.file-rate').text(note);
    var result = this.row.find('.file-result').prop('hidden', false);
    result.find('.result-name').text(status.final_name || status.filename).attr('title', status.final_url || '');
    result.find('.result-size').text(formatBytes(status.size) + ' (' + status.size.toLocaleString('en') + ' bytes)');
    result.find('.result-md5').text(this.hasher && this.hasher.md5 ? this.hasher.md5 : 'verified by the server');
    this.setState('complete', '');
  };

  Upload.prototype.unreadable = function (error) {
    this.fail('This browser could not read the file (' + (error && error.name || error) + '). Was it moved or changed?');
  };

  // `retryable`: offer a Retry button (for failures that waiting may cure).
  Upload.prototype.fail = function (message, retryable) {
    clearTimeout(this.timer);
    this.retryable = !!retryable;
    this.row.find('.file-rate').text('');
    this.setState('error', message);
  };

  // What to do about a failed request: resync, retry later, or tell the user.
  Upload.prototype.failed = function (xhr) {
    var self = this;
    var body = xhr.responseJSON || {};
    var status = xhr.status;
    var detail = body.detail || xhr.statusText || 'no answer';
    if (status === 400 && body.code === 'offset_mismatch' && this.failures < MAX_RETRIES) {
      // Someone (an earlier tab, a request whose answer was lost) moved the upload on: follow the server.
      this.failures += 1;
      this.timer = setTimeout(function () { self.send(body.offset, 'The server has ' + formatBytes(body.offset) + '; continuing from there.'); }, 0);
      return;
    }
    if (status === 410 || body.code === 'expired') {
      this.forget();
      this.uploadId = null;
      return this.fail('Expired: the server discards unfinished uploads after a while, and this one is gone. Choose the file again to start a new upload.');
    }
    if (body.code === 'too_large') {
      this.forget();
      return this.fail('Too large: ' + (MAX_BYTES ? sizeAgainst(this.file.size, MAX_BYTES) + '.' : detail));
    }
    if (status === 404) {
      this.forget();
      this.uploadId = null;
      return this.fail('The server does not know this upload any more. Choose the file again to start over.');
    }
    if (status === 403) { return this.fail('Not allowed: ' + detail); }
    var transient = status === 0 || status === 409 || status === 429 || status >= 500;
    if (transient && this.failures < MAX_RETRIES) {
      this.failures += 1;
      var wait = retryAfter(xhr) || Math.min(30, Math.pow(2, this.failures - 1));
      var why = status === 409 ? 'Conflict: another request is still writing to this upload.'
        : status === 0 ? 'The connection was lost.'
        : 'The server is unavailable (' + detail + ').';
      this.setState('retrying', why + ' Retrying in ' + wait + ' s…');
      this.timer = setTimeout(function () { self.start(); }, wait * 1000);
      return;
    }
    if (status === 409) { return this.fail('Conflict: another request kept this upload busy. Press Retry.', true); }
    if (status === 0) { return this.fail('The server cannot be reached. Press Retry when the connection is back.', true); }
    this.fail('Error ' + status + ': ' + detail, transient);
  };

  Upload.prototype.retry = function () {
    this.failures = 0;
    if (this.data) { this.start(); }
  };

  // Only settled rows can be removed (the button is hidden while a file is in flight).
  Upload.prototype.remove = function () {
    if (this.state === 'paused') { this.forget(); }
    clearTimeout(this.timer);
    delete uploads[this.key];
    this.row.remove();
    summary.update();
  };

  // -- the list's summary --------------------------------------------------------

  var summary = {
    update: function () {
      var counts = {};
      var total = 0;
      $.each(uploads, function (_, up) { counts[up.state] = (counts[up.state] || 0) + 1; total += 1; });
      $('#transfers').prop('hidden', total === 0);
      var parts = [];
      var active = (counts.uploading || 0) + (counts.checking || 0) + (counts.retrying || 0) + (counts.verifying || 0);
      if (active) { parts.push(active + ' uploading'); }
      if (counts.processing) { parts.push(counts.processing + ' processing'); }
      if (counts.paused) { parts.push(counts.paused + ' paused'); }
      if (counts.complete) { parts.push(counts.complete + ' complete'); }
      if (counts.error) { parts.push(counts.error + ' failed'); }
      $('#overall-text').text(parts.join(' · '));
      if (!active) { $('#overall-rate').text(''); }
      if (total && counts.complete === total) { $('#overall-bar').css('width', '100%'); }
    },
    progress: function (loaded, total, rate) {
      $('#overall-bar').css('width', percent(loaded, total) + '%');
      $('#overall-rate').text(rate > 0 ? formatRate(rate) + ' overall' : '');
    }
  };

  // -- the widget ----------------------------------------------------------------

  function uploadFor(file) {
    var key = fileKey(file);
    var up = uploads[key];
    if (!up || up.state === 'complete' || up.state === 'error') {
      if (up) { up.row.remove(); }
      up = uploads[key] = new Upload(file, memory.get(key));
    } else if (up.data) {
      if (up.state === 'retrying') { up.retry(); } // chosen again while waiting to retry: now
      return null; // already being sent
    }
    return up;
  }

  var dragTimer = null;
  $('#fileupload').fileupload({
    url: BASE_URL,
    type: 'PUT',
    multipart: false,
    maxChunkSize: CHUNK_SIZE,
    dataType: 'json',
    headers: { 'X-CSRFToken': CSRF_TOKEN },
    limitConcurrentUploads: 3,
    dropZone: $(document),
    add: function (e, data) {
      var up = uploadFor(data.files[0]);
      if (up) { up.attach(data.files[0], data); }
    },
    // A file smaller than one chunk goes in a single request; it is set up here.
    send: function (e, data) {
      data.url = data.chunky.url();
      if (data.headers && data.headers['Content-Disposition']) {
        data.headers['Content-Disposition'] = contentDisposition(data.files[0].name);
      }
    },
    // blueimp copies its options for every chunk, so the per-upload URL is set here, per chunk.
    chunkbeforesend: function (e, data) {
      data.url = data.chunky.url();
    },
    chunksend: function (e, data) {
      data.headers['Content-Disposition'] = contentDisposition(data.files[0].name);
    },
    chunkdone: function (e, data) {
      data.chunky.acknowledge(data.result);
    },
    progress: function (e, data) {
      if (data.chunky.state === 'uploading' || data.chunky.state === 'retrying') {
        data.chunky.showBytes(data.loaded, data.bitrate / 8);
      }
    },
    progressall: function (e, data) {
      summary.progress(data.loaded, data.total, data.bitrate / 8);
    },
    done: function (e, data) {
      var up = data.chunky;
      up.acknowledge(data.result);
      up.finish();
    },
    fail: function (e, data) {
      var up = data.chunky;
      up.failed(data.jqXHR || { status: 0, responseJSON: null, statusText: data.errorThrown });
    },
    dragover: function () {
      $('#dropzone').addClass('is-over');
      clearTimeout(dragTimer);
      dragTimer = setTimeout(function () { $('#dropzone').removeClass('is-over'); }, 150);
    }
  });

  // Uploads this browser left unfinished (the tab was closed or reloaded): list them
  // as paused, with the server's offset, until their files are chosen again.
  $.each(memory.all(), function (key, saved) {
    var up = uploads[key] = new Upload({ name: saved.name, size: saved.size, lastModified: saved.lastModified }, saved);
    up.setState('paused', 'Checking with the server…');
    api('GET', up.url()).then(function (status) {
      if (up.data) { return; } // the file was chosen again meanwhile; it has taken over
      if (status.status === 'uploading') {
        up.showBytes(status.offset);
        up.setState('paused', 'Interrupted at ' + percent(status.offset, status.size) + '%. Choose ' + saved.name + ' again to resume.');
      } else if (status.status === 'processing') {
        up.poll();
      } else if (status.status === 'complete') {
        up.completed(status);
      } else {
        up.forget();
        up.fail('The earlier upload ' + status.status + '. Choose the file again to start over.');
      }
    }, function (xhr) {
      if (up.data) { return; }
      if (xhr.status === 404 || xhr.status === 410) {
        up.forget();
        up.fail('Expired: the unfinished upload is gone from the server. Choose the file again to start over.');
      } else {
        up.say('The server did not answer; choose ' + saved.name + ' again to resume.');
      }
    });
  });
  summary.update();
}(window.jQuery, window.SparkMD5));
