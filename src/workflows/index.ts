export * from './backup';
export * from './archive';
