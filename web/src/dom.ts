/** Tiny DOM helpers: no framework, text always set as text (never HTML). */

export function $<T extends HTMLElement = HTMLElement> (id: string): T {
  const el = document.getElementById(id)
  if (el == null) throw new Error(`missing #${id}`)
  return el as T
}

export function h<K extends keyof HTMLElementTagNameMap> (tag: K, attrs: Record<string, string | boolean | undefined> = {}, ...children: Array<Node | string>): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue
    if (k === 'class') el.className = String(v)
    else if (k === 'text') el.textContent = String(v)
    else el.setAttribute(k, v === true ? '' : v)
  }
  el.append(...children)
  return el
}

/** A whole number of units as typed by a person: digits only, no sign, no fraction. */
export function parseAmount (text: string): string | undefined {
  const t = text.trim().replace(/[_\s]/g, '')
  if (!/^\d{1,19}$/.test(t)) return undefined
  return BigInt(t) > 0n ? BigInt(t).toString() : undefined
}

export function formatTime (ts: number): string {
  const d = new Date(ts)
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`
}
