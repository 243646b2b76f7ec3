/** Checks for a protocol service's numeric settings: a bad value is a programming error, thrown at once. */

export function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1)
    throw new RangeError(`${name} must be a positive whole number, got ${value}`);
  return value;
}

export function atLeastZero(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`${name} must be a whole number >= 0, got ${value}`);
  return value;
}
