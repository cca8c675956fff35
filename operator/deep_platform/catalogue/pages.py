# ruff: noqa: E501  (HTML reads better unwrapped)
"""Jinja2 templates of the catalogue pages (autoescaped; links are relative to /catalogue/)."""

BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}DEEP Open Catalogue{% endblock %}</title>
<style>
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:70rem;padding:1rem;color:#222}
header a{color:inherit;text-decoration:none} .module{border-bottom:1px solid #ddd;padding:.6rem 0}
.module h2{margin:.2rem 0;font-size:1.15rem} .tag{display:inline-block;background:#eef;border-radius:.3rem;
padding:0 .4rem;margin:.1rem;font-size:.8rem} .warn{background:#fee;border:1px solid #c66;padding:.5rem}
form.filters{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;margin:1rem 0}
pre{background:#f6f6f6;padding:.6rem;overflow:auto} .description{line-height:1.45}
</style></head>
<body><header><h1><a href="{{ root }}">DEEP Open Catalogue</a></h1></header>
{% block body %}{% endblock %}
</body></html>
"""

INDEX = """{% extends "base.html" %}
{% block body %}
<form class="filters" method="get" action="" role="search">
  <label>Search <input type="search" id="search" name="q" value="{{ query.q }}"
    placeholder="title, summary, tag..." autofocus></label>
  {% for key, label, values in facets %}
  <label>{{ label }} <select name="{{ key }}">
    <option value="">any</option>
    {% for value in values %}<option{% if query[key] == value %} selected{% endif %}>{{ value }}</option>{% endfor %}
  </select></label>
  {% endfor %}
  <button type="submit">Filter</button>
</form>
<p id="count">{{ modules|length }} of {{ total }} modules</p>
{% for m in modules %}
<div class="module" data-name="{{ m.name }}">
  <h2><a href="modules/{{ m.name|urlencode }}">{{ m.title }}</a></h2>
  <div>{{ m.summary }}</div>
  <div>{% for t in m.tasks + m.libraries + m['data-type'] %}<span class="tag">{{ t }}</span>{% endfor %}
  {% if not m.metadataValid %}<span class="tag warn">metadata invalid</span>{% endif %}</div>
</div>
{% else %}
<p>No module matches.</p>
{% endfor %}
<p><a href="modules?format=json">JSON</a> · <a href="modules?format=text">text</a></p>
{% endblock %}
"""

MODULE = """{% extends "base.html" %}
{% block title %}{{ title }} - DEEP Open Catalogue{% endblock %}
{% block body %}
<p><a href="../">&larr; all modules</a></p>
<h2 id="title">{{ title }}</h2>
<p id="summary">{{ meta.summary }}</p>
{% if problems %}<div class="warn" id="problems"><strong>Metadata problems:</strong>
<ul>{% for p in problems %}<li>{{ p }}</li>{% endfor %}</ul></div>{% endif %}
<dl>
<dt>Image</dt><dd><code>{{ entry.image }}</code></dd>
<dt>Can be</dt><dd>{{ "trained" if entry.capabilities.trainable else "" }}
{{ "served" if entry.capabilities.servable else "" }}</dd>
{% for key, label in facet_labels %}{% if meta[key] %}
<dt>{{ label }}</dt><dd>{% for v in meta[key] %}<span class="tag">{{ v }}</span>{% endfor %}</dd>
{% endif %}{% endfor %}
{% if meta.license %}<dt>License</dt><dd>{{ meta.license }}</dd>{% endif %}
{% if meta.dates %}<dt>Dates</dt><dd>{% for k, v in meta.dates.items() %}{{ k }} {{ v }} {% endfor %}</dd>{% endif %}
{% if links %}<dt>Links</dt><dd><ul>{% for k, v in links %}<li><a href="{{ v }}" rel="nofollow noopener">{{ k }}</a></li>{% endfor %}</ul></dd>{% endif %}
{% if entry.endpoints %}<dt>Served at</dt><dd><ul>{% for e in entry.endpoints %}<li><code>{{ e }}</code></li>{% endfor %}</ul></dd>{% endif %}
</dl>
<section class="description" id="description">{{ description }}</section>
{% if entry.capabilities.trainable %}<h3>Retrain it</h3>
<pre id="trainingjob">{{ trainingjob }}</pre>{% endif %}
{% if entry.capabilities.servable %}<h3>Serve it</h3>
<pre id="inferenceservice">{{ inferenceservice }}</pre>{% endif %}
<h3>Develop it</h3>
<pre id="devenvironment">{{ devenvironment }}</pre>
<p><a href="{{ name|urlencode }}?format=json">JSON</a></p>
{% endblock %}
"""

TEMPLATES = {"base.html": BASE, "index.html": INDEX, "module.html": MODULE}
