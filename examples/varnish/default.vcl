vcl 4.1;

# visitor-state behind Varnish.
# Public pages are cached once for everyone and never see a cookie. Per-visitor state lives
# under /state (fetched by the page, or included as an ESI fragment): always passed to the
# app, with only the visitor-state cookies. A response that sets a cookie or says private is
# never stored.

import cookie;

backend app {
  .host = "127.0.0.1";
  .port = "3000";
}

sub vcl_recv {
  # Overwrite, never append. Varnish appends client.ip to whatever X-Forwarded-For the
  # client sent, and the app walks that list from the right past trusted proxies
  # (trustProxy: 'loopback'). A client that is itself on a trusted address, or a forged
  # entry such as '127.0.0.1, 203.0.113.9', would let the client choose the address the
  # app believes. Varnish is the edge here: client.ip is the only true entry.
  # (Behind a load balancer, have it speak PROXY to Varnish, -a :6081,PROXY, so that
  # client.ip is still the visitor.)
  set req.http.X-Forwarded-For = client.ip;
  # The app reads Forwarded only without X-Forwarded-For; drop it anyway, and never let a
  # client claim https (a TLS terminator in front would set X-Forwarded-Proto here).
  unset req.http.Forwarded;
  unset req.http.X-Forwarded-Proto;

  if (req.url ~ "^/state(/|\?|$)") {
    # Per-visitor: keep the visitor cookie and the sealed cookie-storage chunks, drop the
    # rest (analytics cookies would only add bytes). Keep the names in step with the app:
    # visitors.cookieName ('vsid' by default) and cookieStorage's name ('vs_data').
    if (req.http.Cookie) {
      cookie.parse(req.http.Cookie);
      cookie.keep_re("^(vsid|vs_data\.[0-9]+)$");
      set req.http.Cookie = cookie.get_string();
      if (req.http.Cookie == "") {
        unset req.http.Cookie;
      }
    }
    return (pass);
  }

  # Public: the same response for every visitor, so no cookie may reach the app or the
  # cache key. The built-in vcl_recv then looks GET and HEAD up in the cache.
  unset req.http.Cookie;
}

sub vcl_backend_response {
  # A response that sets a cookie or is private belongs to one visitor: never store it.
  # A stored Set-Cookie would hand one visitor's ID to everyone. Remember the decision
  # for two minutes (hit-for-miss) so that requests for this URL go straight to the app.
  if (beresp.http.Set-Cookie || beresp.http.Cache-Control ~ "(?i)(private|no-store|no-cache)") {
    set beresp.uncacheable = true;
    set beresp.ttl = 120s;
    return (deliver);
  }
  if (beresp.http.Surrogate-Control ~ "ESI/1\.0") {
    unset beresp.http.Surrogate-Control;
    set beresp.do_esi = true;
  }
}

sub vcl_deliver {
  if (obj.uncacheable) {
    set resp.http.X-Cache = "PASS";
  } elsif (obj.hits > 0) {
    set resp.http.X-Cache = "HIT";
  } else {
    set resp.http.X-Cache = "MISS";
  }
}
