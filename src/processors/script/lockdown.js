// Run once in each context a script engine makes, before any script: freezes every object
// reachable from the global object (each standard constructor, its prototype, their methods)
// and the intrinsics no global names (the prototypes of generators, async functions,
// iterators, typed arrays and promises), then the global object itself. What one event's
// call does to them (a polluted prototype, a replaced method, a new global) then throws
// instead of reaching the next event.
(() => {
  const seen = new Set();
  const freeze = (value) => {
    if ((typeof value !== "object" && typeof value !== "function") || value === null || seen.has(value)) {
      return;
    }
    seen.add(value);
    Object.freeze(value);
    for (const key of Reflect.ownKeys(value)) {
      const property = Object.getOwnPropertyDescriptor(value, key);
      if (property === undefined) continue;
      if ("value" in property) {
        freeze(property.value);
      } else {
        freeze(property.get);
        freeze(property.set);
      }
    }
    freeze(Object.getPrototypeOf(value));
  };
  const unnamed = [
    function* () {},
    async function () {},
    async function* () {},
    (function* () {})(),
    (async function* () {})(),
    [][Symbol.iterator](),
    new Map()[Symbol.iterator](),
    new Set()[Symbol.iterator](),
    ""[Symbol.iterator](),
    /x/[Symbol.matchAll](""),
    Int8Array,
    Promise.resolve(),
  ];
  unnamed.forEach(freeze);
  freeze(globalThis);
  return seen.size;
})()
