// The live part of a page (#live) is replaced whenever the controller sends it anew over server-sent events.
// When the stream drops the page says so and the browser reconnects; a token that stopped working goes to
// the login page.
(function () {
  "use strict";
  const live = document.getElementById("live");
  const status = document.getElementById("live-status");
  if (!live || !live.dataset.live) {
    return;
  }
  let failures = 0;

  function say(text, kind) {
    status.textContent = text;
    status.className = "live " + kind;
  }

  function replace(html) {
    const focused = document.activeElement;
    const keep = focused && live.contains(focused) && focused.id ? focused.id : null;
    live.innerHTML = html;
    live.dataset.updated = String(Date.now());
    if (keep) {
      const again = document.getElementById(keep);
      if (again) again.focus();
    }
  }

  async function stillLoggedIn() {
    try {
      const answer = await fetch(location.href, { redirect: "manual", cache: "no-store" });
      return !(answer.type === "opaqueredirect" || answer.status === 401 || answer.status === 303);
    } catch (error) {
      return true; // the controller is away: keep trying, the page says so
    }
  }

  function connect() {
    const source = new EventSource(live.dataset.live);
    source.addEventListener("open", function () {
      failures = 0;
      say("Live", "ok");
    });
    source.addEventListener("main", function (event) {
      replace(event.data);
    });
    source.addEventListener("login", function () {
      source.close();
      location.assign("/ui/login?expired=1");
    });
    source.addEventListener("error", function () {
      say("Live updates lost: reconnecting…", "lost");
      if (source.readyState === EventSource.CLOSED) {
        failures += 1;
        setTimeout(async function () {
          if (await stillLoggedIn()) {
            connect();
          } else {
            location.assign("/ui/login?expired=1");
          }
        }, Math.min(10000, 1000 * failures));
      }
    });
  }

  connect();
})();
