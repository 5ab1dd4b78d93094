import { bin } from '../../src/index.js';

export interface Geo {
  city: string;
  country: string;
}

export type Theme = 'light' | 'dark';

export const CITIES: readonly Geo[] = [
  { city: 'Lisbon', country: 'Portugal' },
  { city: 'Lyon', country: 'France' },
  { city: 'Montréal', country: 'Canada' },
  { city: 'Nairobi', country: 'Kenya' },
  { city: 'Osaka', country: 'Japan' },
  { city: 'São Paulo', country: 'Brazil' },
];

export const THEMES: readonly Theme[] = ['light', 'dark'];

export const geoBin = bin<Geo>('demo:geo');
export const themeBin = bin<Theme>('demo:theme');

/** What the page and `/api/visitor` show. */
export interface VisitorFacts {
  id: string;
  source: string;
  confidence: string;
  user: string | null;
  geo: Geo | null;
  theme: Theme | null;
}

/** The city a form sent, when it is one of the list; anything else is ignored. */
export const cityNamed = (name: unknown): Geo | undefined => CITIES.find((geo) => geo.city === name);

export const isTheme = (name: unknown): name is Theme => THEMES.includes(name as Theme);
